"""`EmailStore`: the `InboundEmail` log and dedup index, written behind in batches.

Before the application runs, `lookup` says whether this message was already *handled* for
this recipient (and how many attempts it had). After it ran, `record` queues the outcome with
the raw bytes; one writer task commits queued records in batches (gathering records for up
to `linger` seconds before each), one transaction each, so a slow disk commit (SQLite's
fsync) is paid once per batch instead of once per message, and never while a sender waits.
Records not yet committed are kept in memory and answer lookups, so a message retried at
once is still recognised. `flush` / `aclose` write everything out.

Lookups go to the database every time (another process sharing it, or this one before a
restart, may have handled the message). On a SQLite file they run on the event loop through
the store's own query-only connection: an indexed point query is ~10 microseconds, while
handing it to a worker thread costs a GIL hand-over each way, 2.5 ms (median) under load. Other
databases, and SQLite when that connection cannot answer at once, go through a worker thread,
lookups that arrive meanwhile batched into one query.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal, NamedTuple

from django.db.models import Field
from django.utils import timezone

from gateway.db import database_sync_to_async
from gateway.types import EmailScope

__all__ = ["EmailStore", "Known", "StoredStatus"]

logger = logging.getLogger("gateway.email")

StoredStatus = Literal["handled", "failed", "rejected"]
RETRY_DELAY: Final = 1.0
MAX_BATCH_FAILURES: Final = 3


class _Key(NamedTuple):
    message_id: str
    raw_sha256: str
    recipient: str


class Known(NamedTuple):
    """What the store knows about a message and recipient: last status, attempts so far."""

    status: str
    attempts: int


@dataclass
class _Record:
    key: _Key
    scope: EmailScope
    raw: bytes
    subject: str
    status: StoredStatus
    attempts: int
    error: str
    received_at: datetime
    at: datetime


def store_key(scope: EmailScope, digest: str) -> _Key:
    """The dedup key: Message-ID (may be empty), SHA-256 of the raw bytes, recipient."""
    message_id, recipient = (scope["message_id"] or "")[:255], scope["recipient"][:320]
    return _Key(_text(message_id), digest, _text(recipient))


class EmailStore:
    """Looks messages up before they run and records their outcome, written behind."""

    def __init__(
        self, enabled: bool | None = None, *, max_batch: int = 200, linger: float = 0.05
    ) -> None:
        if enabled is None:
            from django.apps import apps

            enabled = apps.is_installed("django_app")
        self.enabled = enabled
        self.max_batch = max_batch
        self.linger = linger
        self._flushing = 0
        self._flush_now = asyncio.Event()
        self._pending: dict[_Key, _Record] = {}
        self._queue: list[_Record] = []
        self._wakeup = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._lookups: list[tuple[_Key, asyncio.Future[Known | None]]] = []
        self._reader: asyncio.Task[None] | None = None
        self._inline: _SQLiteReader | None = None
        self._inline_checked = False
        self._idle = asyncio.Event()
        self._idle.set()

    @functools.cached_property
    def _one_thread(self) -> bool:
        """True for an in-memory SQLite database (tests): its connections lock each other out."""
        from django.db import connections

        settings = connections.settings["default"]
        name = str(settings.get("TEST", {}).get("NAME") or settings.get("NAME") or "")
        return "sqlite" in settings["ENGINE"] and (name in ("", ":memory:") or "memory" in name)

    async def lookup(self, scope: EmailScope, digest: str) -> Known | None:
        """The last outcome recorded for this message and recipient, or None if never seen."""
        if not self.enabled:
            return None
        key = store_key(scope, digest)
        pending = self._pending.get(key)
        if pending is not None:
            return Known(pending.status, pending.attempts)
        inline = self._inline_reader()
        if inline is not None:
            try:
                return inline.get(key)
            except sqlite3.Error as exc:  # locked (rollback journal) or gone: the thread path
                logger.debug("InboundEmail: inline lookup failed (%s); using a thread.", exc)
        waiter: asyncio.Future[Known | None] = asyncio.get_running_loop().create_future()
        self._lookups.append((key, waiter))
        if self._reader is None or self._reader.done():
            self._reader = asyncio.create_task(self._lookup_loop(), name="email-store-reader")
        return await waiter

    def _inline_reader(self) -> _SQLiteReader | None:
        if not self._inline_checked:
            self._inline_checked = True
            path = _sqlite_file()
            if path is not None:
                try:
                    self._inline = _SQLiteReader(path)
                except sqlite3.Error as exc:
                    logger.warning("InboundEmail: no inline reader for %s: %s", path, exc)
        return self._inline

    async def _lookup_loop(self) -> None:
        # Lookups that arrive while a query runs are answered together by the next one:
        # one thread hop and one SELECT for many concurrent messages.
        select = database_sync_to_async(_select, thread_sensitive=self._one_thread)
        while self._lookups:
            batch, self._lookups = self._lookups, []
            try:
                found = await select([key for key, _ in batch])
            except Exception as exc:
                for _, waiter in batch:
                    if not waiter.done():
                        waiter.set_exception(exc)
                continue
            for key, waiter in batch:
                if not waiter.done():
                    waiter.set_result(found.get(key))

    def record(
        self,
        scope: EmailScope,
        digest: str,
        raw: bytes,
        subject: str,
        status: StoredStatus,
        attempts: int,
        error: str = "",
        received_at: datetime | None = None,
    ) -> None:
        """Queue one outcome; the writer commits it soon (see `flush`)."""
        if not self.enabled:
            return
        key = store_key(scope, digest)
        now = timezone.now()
        item = _Record(key, scope, raw, subject, status, attempts, error, received_at or now, now)
        self._pending[key] = item
        self._queue.append(item)
        self._idle.clear()
        self._wakeup.set()
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_loop(), name="email-store-writer")

    async def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every queued record is committed; False if `timeout` passed first."""
        self._flushing += 1
        self._flush_now.set()
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            logger.error("InboundEmail: %d record(s) not written in time.", len(self._queue))
            return False
        finally:
            self._flushing -= 1
            if not self._flushing:
                self._flush_now.clear()
        return True

    async def aclose(self, timeout: float = 30.0) -> bool:
        """Flush, then stop the writer."""
        flushed = await self.flush(timeout)
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
        if self._inline is not None:
            self._inline.close()
            self._inline = None
        self._inline_checked = False
        return flushed

    async def _write_one_by_one(self, batch: list[_Record], write: Any) -> None:
        # A batch that keeps failing may hold one bad record: save the others, drop it.
        for item in batch:
            try:
                await write([item])
            except Exception:
                logger.exception("InboundEmail: dropping the record of %s.", item.key)

    async def _linger(self) -> None:
        """Wait up to `linger` for more records, unless a batch is full or a flush waits."""
        if len(self._queue) >= self.max_batch or self._flushing:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.linger):
                await self._flush_now.wait()

    async def _write_loop(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            failures = 0
            write = database_sync_to_async(_write, thread_sensitive=self._one_thread)
            while self._queue:
                # Linger before every batch, not only the first, so a busy intake writes tens
                # of records per transaction. Without it each next batch held only what came
                # in during the last write (often a handful): more commits and thread hops,
                # and more writer CPU per record taken from a machine the intake shares.
                await self._linger()
                batch = self._queue[: self.max_batch]
                try:
                    await write(batch)
                except Exception:
                    # The database is away: keep the records (they still answer lookups).
                    failures += 1
                    logger.exception("InboundEmail: could not write %d record(s).", len(batch))
                    if failures < MAX_BATCH_FAILURES:
                        await asyncio.sleep(RETRY_DELAY)
                        continue
                    await self._write_one_by_one(batch, write)
                failures = 0
                del self._queue[: len(batch)]
                for item in batch:
                    if self._pending.get(item.key) is item:
                        del self._pending[item.key]
            self._idle.set()


class _SQLiteReader:
    """The store's own query-only connection to a SQLite file, for lookups on the event loop."""

    def __init__(self, path: str) -> None:
        from django_app.models import InboundEmail

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

    def get(self, key: _Key) -> Known | None:
        """The stored outcome for `key`, or None."""
        self._cursor.execute(self._sql, (key.raw_sha256, key.message_id, key.recipient))
        found = self._cursor.fetchone()
        return None if found is None else Known(found[0], found[1])

    def close(self) -> None:
        """Close the connection."""
        self._db.close()


def _sqlite_file() -> str | None:
    """The path of the default database when it is a SQLite file (not in memory), else None."""
    from django.db import connection

    if connection.vendor != "sqlite":
        return None
    name = str(connection.settings_dict.get("NAME") or "")
    if not name or name == ":memory:" or "mode=memory" in name or name.startswith("file:"):
        return None
    return name


def _select(keys: list[_Key]) -> dict[_Key, Known]:
    from django.db import connection

    from django_app.models import InboundEmail

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
    return {_Key(*row[:3]): Known(row[3], row[4]) for row in rows}


def _write(batch: list[_Record]) -> None:
    from django.db import IntegrityError, connection, transaction

    from django_app.models import InboundEmail

    latest = {item.key: item for item in batch}  # several outcomes of one key: the last wins
    if connection.features.supports_update_conflicts_with_target:
        with transaction.atomic():
            _upsert([latest[key] for key in sorted(latest)])  # one lock order: no deadlock
        return
    existing = set(_select(list(latest))) & latest.keys()  # a digest may have other rows
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


def _upsert(items: list[_Record]) -> None:
    """One ``INSERT ... ON CONFLICT DO UPDATE`` per record, in plain SQL, one executemany.

    A row another process (or an earlier batch) wrote takes the new outcome; the raw bytes
    and the envelope of the first copy stay. Values are adapted here, not field by field
    through the ORM, which cost more than the database's work.
    """
    from django.db import connection

    from django_app.models import InboundEmail

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


def _insert(items: list[_Record]) -> None:
    """One multi-row INSERT per batch, in plain SQL: the ORM's per-row work is the bottleneck."""
    from django.db import connection

    from django_app.models import InboundEmail

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


def _outcome(item: _Record) -> dict[str, object]:
    return {
        "status": item.status,
        "attempts": item.attempts,
        "error": item.error,
        "handled_at": None if item.status == "failed" else item.at,
    }


def _columns(item: _Record) -> dict[str, object]:
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
