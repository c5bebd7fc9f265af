"""What the gateway needs of DATABASES: transactions that wait, connections that are kept.

gateway.W001: a SQLite file database whose transactions can fail at once under the gateway.
The gateway does its own database work (dedup, stores, device state, command history) on its
database thread while synchronous consumers run in others, so a file database sees concurrent
writers from the first minute. SQLite's default ``BEGIN`` (DEFERRED) takes the write lock only
at the first write: a transaction that read first and then writes while another connection
holds the lock fails at once with "database is locked", without waiting for the busy timeout.
Django's ``OPTIONS["transaction_mode"] = "IMMEDIATE"`` takes the lock at ``BEGIN``, where the
timeout applies. In-memory databases (tests) are left alone.

gateway.W108 (``check --deploy``): ``CONN_MAX_AGE`` 0, Django's default. Every database call of
the gateway (`gateway.db.database_sync_to_async`) closes the connection after it, as Django
does after a request, so the next call opens a new one: a TCP connection and a login with
PostgreSQL, a file opened and its functions registered with SQLite, for every stored
message and device reading.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core import checks

HINT = (
    'Add "OPTIONS": {"transaction_mode": "IMMEDIATE", "init_command": "PRAGMA '
    'journal_mode=WAL"} to this database (see docs/settings.md, "SQLite"), or use PostgreSQL.'
)
LOCKING_MODES = frozenset({"IMMEDIATE", "EXCLUSIVE"})
CONNECTION_HINT = (
    'Set "CONN_MAX_AGE": None for SQLite, or a number of seconds (60) with '
    '"CONN_HEALTH_CHECKS": True for a database server (see docs/settings.md, "Database '
    'connections").'
)


def check_sqlite_transactions(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """One warning per file-backed SQLite database with deferred transactions."""
    return sqlite_warnings(getattr(settings, "DATABASES", {}))


def sqlite_warnings(databases: object) -> list[checks.CheckMessage]:
    """The warnings of ``check_sqlite_transactions`` for a DATABASES setting."""
    return [
        checks.Warning(
            f"DATABASES[{alias!r}] is a SQLite file with deferred transactions: writes from "
            "the gateway's database thread and synchronous consumers at the same time fail "
            'with "database is locked" instead of waiting',
            hint=HINT,
            id="gateway.W001",
        )
        for alias, entry in _entries(databases)
        if _defers(entry)
    ]


def check_connection_reuse(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """One warning per database whose connections are closed after every call (deploy)."""
    return connection_warnings(getattr(settings, "DATABASES", {}))


def connection_warnings(databases: object) -> list[checks.CheckMessage]:
    """The warnings of ``check_connection_reuse`` for a DATABASES setting."""
    return [
        checks.Warning(
            f"DATABASES[{alias!r}] has CONN_MAX_AGE 0: the gateway opens a new database "
            "connection for every database call (stored messages, dedup, device readings) "
            "and closes it after",
            hint=CONNECTION_HINT,
            id="gateway.W108",
        )
        for alias, entry in _entries(databases)
        if entry.get("CONN_MAX_AGE", 0) == 0 and not _in_memory(entry)
    ]


def _entries(databases: object) -> list[tuple[str, Mapping[str, Any]]]:
    """DATABASES' aliases with their settings; nothing of a setting that is no dict."""
    if not isinstance(databases, Mapping):
        return []
    return [(alias, entry) for alias, entry in databases.items() if isinstance(entry, Mapping)]


def _in_memory(entry: Mapping[str, Any]) -> bool:
    name = str(entry.get("NAME", "") or "")
    is_sqlite = str(entry.get("ENGINE", "")).endswith("sqlite3")
    return is_sqlite and (name in ("", ":memory:") or "mode=memory" in name)


def _defers(entry: Mapping[str, Any]) -> bool:
    if not str(entry.get("ENGINE", "")).endswith("sqlite3") or _in_memory(entry):
        return False
    options = entry.get("OPTIONS") or {}
    mode = options.get("transaction_mode") if isinstance(options, Mapping) else None
    return str(mode or "").upper() not in LOCKING_MODES
