"""The SQL behind `DatabaseMailStore`: the dedup key, point lookups, batched writes.

Plain SQL on the hot path: the ORM's query building and per-row work cost more than the
database's. `SQLiteReader` is the store's own query-only connection to a SQLite file, so a
lookup runs on the event loop (an indexed point query is ~10 microseconds; a hand-over to a
worker thread costs a GIL switch each way). `select` and `write` run in a worker thread.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final, NamedTuple

from django.db import IntegrityError, connection, transaction
from django.db.models import Field

from django_app.models import InboundEmail
from gateway.email_store import Known, StoredStatus
from gateway.types import EmailScope

__all__ = ["MailKey", "MailRecord", "SQLiteReader", "select", "sqlite_file", "store_key", "write"]


class MailKey(NamedTuple):
    """The dedup key of one message for one recipient, as stored."""

    message_id: str
    raw_sha256: str
    recipient: str


@dataclass
class MailRecord:
    """One outcome queued for writing."""

    key: MailKey
    scope: EmailScope
    raw: bytes
    subject: str
    status: StoredStatus
    attempts: int
    error: str
    received_at: datetime
    at: datetime


def store_key(scope: EmailScope, digest: str) -> MailKey:
    """The dedup key: Message-ID (may be empty), SHA-256 of the raw bytes, recipient."""
    message_id, recipient = (scope["message_id"] or "")[:255], scope["recipient"][:320]
    return MailKey(_text(message_id), digest, _text(recipient))


class SQLiteReader:
    """The store's own query-only connection to a SQLite file, for lookups on the event loop."""

    def __init__(self, path: str) -> None:
        # Autocommit: every SELECT sees what any process committed before it. No busy
        # timeout: a lookup that would wait for a lock goes to a worker thread instead.
        uri = f"{Path(path).resolve().as_uri()}?mode=rw"  # never creates the file
        self._db = sqlite3.connect(
            uri, timeout=0.0, isolation_level=None, check_same_thread=False, uri=True
        )
        self._db.execute("PRAGMA query_only = ON")
        self._cursor = self._db.cursor()  # one cursor for every lookup: no new object each
        table = InboundEmail._meta.db_table.replace('"', '""')
        self._sql = (
            f'SELECT status, attempts FROM "{table}" '
            "WHERE raw_sha256 = ? AND message_id = ? AND recipient = ?"
        )

    def get(self, key: MailKey) -> Known | None:
        """The stored outcome for `key`, or None."""
        self._cursor.execute(self._sql, (key.raw_sha256, key.message_id, key.recipient))
        found = self._cursor.fetchone()
        return None if found is None else Known(found[0], found[1])

    def close(self) -> None:
        """Close the connection."""
        self._db.close()


def sqlite_file() -> str | None:
    """The path of the default database when it is a SQLite file (not in memory), else None."""
    if connection.vendor != "sqlite":
        return None
    name = str(connection.settings_dict.get("NAME") or "")
    if not name or name == ":memory:" or "mode=memory" in name or name.startswith("file:"):
        return None
    return name


def select(keys: list[MailKey]) -> dict[MailKey, Known]:
    """The stored outcome of each of `keys` that has a row, in one query."""
    # Plain SQL on the hot path: the ORM's query building costs more than the query.
    digests = sorted({key.raw_sha256 for key in keys})
    table = connection.ops.quote_name(InboundEmail._meta.db_table)
    marks = ", ".join(["%s"] * len(digests))
    sql = (
        f"SELECT message_id, raw_sha256, recipient, status, attempts FROM {table} "
        f"WHERE raw_sha256 IN ({marks})"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, digests)
        rows = cursor.fetchall()
    return {MailKey(*row[:3]): Known(row[3], row[4]) for row in rows}


def write(batch: list[MailRecord]) -> None:
    """Commit `batch` in one transaction: new keys inserted, known keys take the new outcome."""
    latest = {item.key: item for item in batch}  # several outcomes of one key: the last wins
    if connection.features.supports_update_conflicts_with_target:
        with transaction.atomic():
            _upsert([latest[key] for key in sorted(latest)])  # one lock order: no deadlock
        return
    existing = set(select(list(latest))) & latest.keys()  # a digest may have other rows
    with transaction.atomic():
        # Rows in key order: processes writing overlapping batches then take their row locks
        # in the same order and wait for each other instead of deadlocking (PostgreSQL).
        for key in sorted(existing):
            InboundEmail.objects.filter(**key._asdict()).update(**_outcome(latest[key]))
        new = [latest[key] for key in sorted(latest) if key not in existing]
        try:
            with transaction.atomic():
                _insert(new)
        except IntegrityError:  # another process inserted some of them meanwhile
            for item in new:
                outcome = _outcome(item)
                if not InboundEmail.objects.filter(**item.key._asdict()).update(**outcome):
                    InboundEmail.objects.create(**item.key._asdict(), **outcome, **_columns(item))


_UPSERT_COLUMNS: Final = (
    "message_id", "raw_sha256", "recipient", "status", "attempts", "error", "handled_at",
    "raw", "size", "sender", "subject", "source", "adapter", "mailbox", "uid", "received_at",
)  # fmt: skip
_OUTCOME_COLUMNS: Final = ("status", "attempts", "error", "handled_at")


def _upsert(items: list[MailRecord]) -> None:
    """One ``INSERT ... ON CONFLICT DO UPDATE`` per record, in plain SQL, one executemany.

    A row another process (or an earlier batch) wrote takes the new outcome; the raw bytes
    and the envelope of the first copy stay. Values are adapted here, not field by field
    through the ORM, which cost more than the database's work.
    """
    if not items:
        return
    meta = InboundEmail._meta
    quote = connection.ops.quote_name
    column = {name: quote(str(_concrete(meta.get_field(name)).column)) for name in _UPSERT_COLUMNS}
    target = ", ".join(column[name] for name in ("raw_sha256", "message_id", "recipient"))
    updates = ", ".join(f"{column[name]} = EXCLUDED.{column[name]}" for name in _OUTCOME_COLUMNS)
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({', '.join(column.values())}) "
        f"VALUES ({', '.join(['%s'] * len(column))}) "
        f"ON CONFLICT ({target}) DO UPDATE SET {updates}"
    )
    when = connection.ops.adapt_datetimefield_value
    raw = _concrete(meta.get_field("raw"))
    params = []
    for item in items:
        key, scope = item.key, item.scope
        handled_at = None if item.status == "failed" else when(item.at)
        params.append((
            key.message_id, key.raw_sha256, key.recipient, item.status, item.attempts,
            item.error, handled_at, raw.get_db_prep_value(item.raw, connection), len(item.raw),
            scope["sender"][:320], item.subject[:255], scope["source"], scope["adapter"][:100],
            (scope["mailbox"] or "")[:255], scope["uid"], when(item.received_at),
        ))  # fmt: skip
    rows = [tuple(_text(v) if isinstance(v, str) else v for v in row) for row in params]
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


def _insert(items: list[MailRecord]) -> None:
    """One multi-row INSERT per batch, in plain SQL: the ORM's per-row work is the bottleneck."""
    if not items:
        return
    rows = [{**item.key._asdict(), **_outcome(item), **_columns(item)} for item in items]
    fields = [_concrete(InboundEmail._meta.get_field(name)) for name in rows[0]]
    quote = connection.ops.quote_name
    columns = ", ".join(quote(str(field.column)) for field in fields)
    marks = ", ".join(["%s"] * len(fields))
    sql = f"INSERT INTO {quote(InboundEmail._meta.db_table)} ({columns}) VALUES ({marks})"
    params = [
        [field.get_db_prep_save(row[field.name], connection) for field in fields] for row in rows
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)


def _text(value: str) -> str:
    """`value` fit for a text column: PostgreSQL refuses NUL, which becomes U+FFFD."""
    return value.replace("\x00", "\ufffd")


def _concrete(field: object) -> Field[Any, Any]:
    assert isinstance(field, Field)
    return field


def _outcome(item: MailRecord) -> dict[str, object]:
    return {
        "status": item.status,
        "attempts": item.attempts,
        "error": item.error,
        "handled_at": None if item.status == "failed" else item.at,
    }


def _columns(item: MailRecord) -> dict[str, object]:
    scope = item.scope
    return {
        "raw": item.raw,
        "size": len(item.raw),
        "sender": scope["sender"][:320],
        "subject": item.subject[:255],
        "source": scope["source"],
        "adapter": scope["adapter"][:100],
        "mailbox": (scope["mailbox"] or "")[:255],
        "uid": scope["uid"],
        "received_at": item.received_at,
    }
