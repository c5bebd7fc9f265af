"""This directory's tests run on PostgreSQL only.

Under the suite's SQLite settings only `test_run.py` is collected: it starts pytest on this
directory again with `tests.postgres_settings`, where the session starts its own server.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.postgres import PostgresServer, postgres_server

__all__ = ["postgres_server"]

SETTINGS = "tests.postgres_settings"
ON_POSTGRES = os.environ.get("DJANGO_SETTINGS_MODULE") == SETTINGS
LAUNCHER = "test_run.py"

if ON_POSTGRES:
    collect_ignore = [LAUNCHER]
else:
    collect_ignore = [p.name for p in Path(__file__).parent.glob("test_*.py") if p.name != LAUNCHER]


if ON_POSTGRES:

    @pytest.fixture(scope="session")
    def django_db_modify_db_settings(
        django_db_modify_db_settings_parallel_suffix: None, postgres_server: PostgresServer
    ) -> None:
        """Point the default database at the session's server before the test database exists."""
        from django.conf import settings

        settings.DATABASES["default"].update(
            HOST=postgres_server.host, PORT=str(postgres_server.port), USER=postgres_server.user
        )

    @pytest.fixture(scope="session", autouse=True)
    def _no_sessions_left_at_the_end(
        django_db_setup: None, postgres_server: PostgresServer
    ) -> Iterator[None]:
        """End sessions still open on the test database, so that it can be dropped.

        The async ORM keeps a connection in asgiref's sync thread, out of the test's reach.
        """
        yield
        import psycopg
        from django.db import connection

        with psycopg.connect(postgres_server.dsn(), autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (connection.settings_dict["NAME"],),
            )
