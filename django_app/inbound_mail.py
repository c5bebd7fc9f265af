"""`DatabaseMailStore`: the `InboundEmail` log and dedup index, written behind in batches.

It implements `gateway.email_store.InboundMailStore`, the default of the email adapters'
``STORE`` option. Before the application runs, `lookup` says whether this message was
already *handled* for this recipient (and how many attempts it had). After it ran, `record`
queues the outcome with the raw bytes; one writer task commits queued records in batches
(gathering records for up to `linger` seconds before each), one transaction each, so a slow
disk commit (SQLite's fsync) is paid once per batch instead of once per message, and never
while a sender waits. Records not yet committed are kept in memory and answer lookups, so a
message retried at once is still recognised. `flush` / `aclose` write everything out.

Lookups go to the database every time (another process sharing it, or this one before a
restart, may have handled the message). On a SQLite file they run on the event loop through
the store's own query-only connection (`SQLiteReader`): an indexed point query is ~10
microseconds, while handing it to a worker thread costs a GIL hand-over each way, 2.5 ms
(median) under load. Other databases, and SQLite when that connection cannot answer at once,
go through a worker thread, lookups that arrive meanwhile batched into one query.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sqlite3
from datetime import datetime
from typing import Any, Final

from django.db import connections
from django.utils import timezone

from django_app.inbound_mail_db import (
    MailKey,
    MailRecord,
    SQLiteReader,
    select,
    sqlite_file,
    store_key,
    write,
)
from gateway.db import database_sync_to_async
from gateway.email_store import Known, StoredStatus
from gateway.types import EmailScope

__all__ = ["DatabaseMailStore"]

logger = logging.getLogger("gateway.email")

RETRY_DELAY: Final = 1.0
MAX_BATCH_FAILURES: Final = 3


class DatabaseMailStore:
    """The default `InboundMailStore`: `InboundEmail` rows, looked up inline, written behind."""

    def __init__(self, *, max_batch: int = 200, linger: float = 0.05) -> None:
        self.max_batch = max_batch
        self.linger = linger
        self._flushing = 0
        self._flush_now = asyncio.Event()
        self._pending: dict[MailKey, MailRecord] = {}
        self._queue: list[MailRecord] = []
        self._wakeup = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._lookups: list[tuple[MailKey, asyncio.Future[Known | None]]] = []
        self._reader: asyncio.Task[None] | None = None
        self._inline: SQLiteReader | None = None
        self._inline_checked = False
        self._idle = asyncio.Event()
        self._idle.set()

    @functools.cached_property
    def _one_thread(self) -> bool:
        """True for an in-memory SQLite database (tests): its connections lock each other out."""
        settings = connections.settings["default"]
        name = str(settings.get("TEST", {}).get("NAME") or settings.get("NAME") or "")
        return "sqlite" in settings["ENGINE"] and (name in ("", ":memory:") or "memory" in name)

    async def lookup(self, scope: EmailScope, digest: str) -> Known | None:
        """The last outcome recorded for this message and recipient, or None if never seen."""
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

    def _inline_reader(self) -> SQLiteReader | None:
        if not self._inline_checked:
            self._inline_checked = True
            path = sqlite_file()
            if path is not None:
                try:
                    self._inline = SQLiteReader(path)
                except sqlite3.Error as exc:
                    logger.warning("InboundEmail: no inline reader for %s: %s", path, exc)
        return self._inline

    async def _lookup_loop(self) -> None:
        # Lookups that arrive while a query runs are answered together by the next one:
        # one thread hop and one SELECT for many concurrent messages.
        query = database_sync_to_async(select, thread_sensitive=self._one_thread)
        while self._lookups:
            batch, self._lookups = self._lookups, []
            try:
                found = await query([key for key, _ in batch])
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
        key = store_key(scope, digest)
        now = timezone.now()
        item = MailRecord(
            key, scope, raw, subject, status, attempts, error, received_at or now, now
        )
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

    async def _write_one_by_one(self, batch: list[MailRecord], commit: Any) -> None:
        # A batch that keeps failing may hold one bad record: save the others, drop it.
        for item in batch:
            try:
                await commit([item])
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
            commit = database_sync_to_async(write, thread_sensitive=self._one_thread)
            while self._queue:
                # Linger before every batch, not only the first, so a busy intake writes tens
                # of records per transaction. Without it each next batch held only what came
                # in during the last write (often a handful): more commits and thread hops,
                # and more writer CPU per record taken from a machine the intake shares.
                await self._linger()
                batch = self._queue[: self.max_batch]
                try:
                    await commit(batch)
                except Exception:
                    # The database is away: keep the records (they still answer lookups).
                    failures += 1
                    logger.exception("InboundEmail: could not write %d record(s).", len(batch))
                    if failures < MAX_BATCH_FAILURES:
                        await asyncio.sleep(RETRY_DELAY)
                        continue
                    await self._write_one_by_one(batch, commit)
                failures = 0
                del self._queue[: len(batch)]
                for item in batch:
                    if self._pending.get(item.key) is item:
                        del self._pending[item.key]
            self._idle.set()
