"""gateway.W001: a SQLite database whose transactions can fail at once under the gateway.

The gateway does its own database work (dedup, stores, device state, command history) on its
database thread while synchronous consumers run in others, so a file database sees concurrent
writers from the first minute. SQLite's default ``BEGIN`` (DEFERRED) takes the write lock only
at the first write: a transaction that read first and then writes while another connection
holds the lock fails at once with "database is locked", without waiting for the busy timeout.
Django's ``OPTIONS["transaction_mode"] = "IMMEDIATE"`` takes the lock at ``BEGIN``, where the
timeout applies. In-memory databases (tests) are left alone.
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


def check_sqlite_transactions(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """One warning per file-backed SQLite database with deferred transactions."""
    return sqlite_warnings(getattr(settings, "DATABASES", {}))


def sqlite_warnings(databases: object) -> list[checks.CheckMessage]:
    """The warnings of ``check_sqlite_transactions`` for a DATABASES setting."""
    if not isinstance(databases, Mapping):
        return []
    return [
        checks.Warning(
            f"DATABASES[{alias!r}] is a SQLite file with deferred transactions: writes from "
            "the gateway's database thread and synchronous consumers at the same time fail "
            'with "database is locked" instead of waiting',
            hint=HINT,
            id="gateway.W001",
        )
        for alias, entry in databases.items()
        if isinstance(entry, Mapping) and _defers(entry)
    ]


def _defers(entry: Mapping[str, Any]) -> bool:
    if not str(entry.get("ENGINE", "")).endswith("sqlite3"):
        return False
    name = str(entry.get("NAME", "") or "")
    if name in ("", ":memory:") or "mode=memory" in name:
        return False
    options = entry.get("OPTIONS") or {}
    mode = options.get("transaction_mode") if isinstance(options, Mapping) else None
    return str(mode or "").upper() not in LOCKING_MODES
