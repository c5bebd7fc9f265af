"""The committed migration builds the schema on PostgreSQL, constraints included."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.recorder import MigrationRecorder

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


def unique_column_sets(table: str) -> set[tuple[str, ...]]:
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, table)
    return {tuple(c["columns"]) for c in constraints.values() if c["unique"]}


def test_runs_on_postgresql() -> None:
    assert connection.vendor == "postgresql"


def test_the_initial_migration_was_applied() -> None:
    applied = MigrationRecorder(connection).applied_migrations()
    assert ("gateway", "0001_initial") in applied


def test_dedup_constraints_exist() -> None:
    assert ("raw_sha256", "message_id", "recipient") in unique_column_sets("gateway_inboundemail")
    assert ("sid",) in unique_column_sets("gateway_smsmessage")
    assert ("number",) in unique_column_sets("gateway_smsoptout")
    assert ("device_id",) in unique_column_sets("gateway_device")


def test_models_and_migrations_agree_on_postgresql() -> None:
    out = StringIO()
    try:
        call_command("makemigrations", "gateway", check=True, dry_run=True, stdout=out)
    except SystemExit as exc:
        pytest.fail(f"models changed without a migration:\n{out.getvalue()} (exit {exc.code})")
    assert "No changes detected" in out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_the_migration_reverses_and_applies_again() -> None:
    call_command("migrate", "gateway", "zero", verbosity=0)
    assert "gateway_inboundemail" not in connection.introspection.table_names()
    call_command("migrate", "gateway", verbosity=0)
    assert "gateway_inboundemail" in connection.introspection.table_names()
