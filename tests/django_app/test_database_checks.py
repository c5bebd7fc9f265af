"""gateway.W001: SQLite file databases need IMMEDIATE transactions under the gateway;
gateway.W108 (``check --deploy``): connections kept between database calls.

The failure the warning names is shown first, on a real SQLite file: two connections each
read, then write, in one transaction. With SQLite's default DEFERRED ``BEGIN`` the second
writer fails at once with "database is locked" although the busy timeout is 5 s; with
``BEGIN IMMEDIATE`` it waits for the first and succeeds.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from django.core.checks import run_checks
from django.test import override_settings

from django_app.database_checks import connection_warnings, sqlite_warnings


def read_then_write(path: Path, begin: str, results: list[str], ready: threading.Barrier) -> None:
    conn = sqlite3.connect(path, timeout=5.0, isolation_level=None)
    try:
        conn.execute(begin)
        conn.execute("SELECT count(*) FROM t").fetchone()
        ready.wait()
        conn.execute("INSERT INTO t VALUES (1)")
        conn.execute("COMMIT")
        results.append("ok")
    except sqlite3.OperationalError as exc:
        results.append(str(exc))
        conn.execute("ROLLBACK")
    finally:
        conn.close()


def race(path: Path, begin: str) -> list[str]:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS t (x INTEGER)")
    results: list[str] = []
    # DEFERRED: both hold a read lock when they reach the barrier. IMMEDIATE: the second
    # BEGIN waits for the first transaction, so only the first one reaches the barrier.
    ready = threading.Barrier(2 if begin == "BEGIN" else 1)
    threads = [
        threading.Thread(target=read_then_write, args=(path, begin, results, ready))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return sorted(results)


def test_deferred_transactions_fail_at_once_and_immediate_ones_wait(tmp_path: Path) -> None:
    assert race(tmp_path / "deferred.sqlite3", "BEGIN") == ["database is locked", "ok"]
    assert race(tmp_path / "immediate.sqlite3", "BEGIN IMMEDIATE") == ["ok", "ok"]


def sqlite(name: str, **options: str) -> dict[str, object]:
    entry: dict[str, object] = {"ENGINE": "django.db.backends.sqlite3", "NAME": name}
    if options:
        entry["OPTIONS"] = options
    return entry


@pytest.mark.parametrize(
    "database",
    [
        sqlite("/srv/app/db.sqlite3"),
        sqlite("/srv/app/db.sqlite3", transaction_mode="DEFERRED"),
        sqlite("/srv/app/db.sqlite3", init_command="PRAGMA journal_mode=WAL"),
    ],
)
def test_a_sqlite_file_with_deferred_transactions_is_warned_of(database: object) -> None:
    (warning,) = sqlite_warnings({"default": database})
    assert warning.id == "gateway.W001"
    assert "DATABASES['default'] is a SQLite file with deferred transactions" in warning.msg
    assert '"transaction_mode": "IMMEDIATE"' in str(warning.hint)


@pytest.mark.parametrize(
    "database",
    [
        sqlite("/srv/app/db.sqlite3", transaction_mode="IMMEDIATE"),
        sqlite("/srv/app/db.sqlite3", transaction_mode="exclusive"),
        sqlite(":memory:"),
        sqlite("file:memdb1?mode=memory&cache=shared"),
        {"ENGINE": "django.db.backends.postgresql", "NAME": "gateway"},
    ],
)
def test_immediate_memory_and_other_databases_pass(database: object) -> None:
    assert sqlite_warnings({"default": database}) == []


@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
def test_manage_py_check_reports_it() -> None:
    with override_settings(DATABASES={"default": sqlite("/srv/app/db.sqlite3")}):
        messages = run_checks(tags=["gateway"])
    assert [message.id for message in messages] == ["gateway.W001"]


@pytest.mark.parametrize(
    "database",
    [
        sqlite("/srv/app/db.sqlite3"),
        {"ENGINE": "django.db.backends.postgresql", "NAME": "gateway", "CONN_MAX_AGE": 0},
    ],
)
def test_connections_closed_after_every_call_are_warned_of_on_deploy(database: object) -> None:
    (warning,) = connection_warnings({"default": database})
    assert warning.id == "gateway.W108"
    assert "DATABASES['default'] has CONN_MAX_AGE 0" in warning.msg
    assert '"CONN_MAX_AGE": None' in str(warning.hint)


@pytest.mark.parametrize(
    "database",
    [
        {**sqlite("/srv/app/db.sqlite3"), "CONN_MAX_AGE": None},
        {"ENGINE": "django.db.backends.postgresql", "NAME": "gateway", "CONN_MAX_AGE": 60},
        sqlite(":memory:"),
    ],
)
def test_kept_connections_and_memory_databases_pass(database: object) -> None:
    assert connection_warnings({"default": database}) == []


@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
def test_only_check_deploy_reports_connections_closed_after_every_call() -> None:
    database = sqlite("/srv/app/db.sqlite3", transaction_mode="IMMEDIATE")
    with override_settings(DATABASES={"default": database}):
        plain = run_checks(tags=["gateway"])
        deploy = run_checks(tags=["gateway"], include_deployment_checks=True)
    assert "gateway.W108" not in [message.id for message in plain]
    assert "gateway.W108" in [message.id for message in deploy]
