"""IMAP intake: watch mailboxes with IDLE (or polling) and hand each new message to the app.

One watcher task per configured mailbox keeps one connection. It searches the unseen
messages above its checkpoint, fetches each with ``BODY.PEEK[]`` (so fetching marks nothing
seen), runs the application through the shared email intake, and only after the application
returned flags the message ``\\Seen`` or moves it. A message the application keeps failing on
stays unseen and is dead-lettered; mail no route accepts stays unseen and is logged once. Then
it waits in IDLE (re-issued before the 29-minute server limit), or polls when the server has
no IDLE. Any connection failure closes the session and reconnects with capped backoff.

aioimaplib (GPL-3.0) is imported here and in ``imap_session`` only: the optional ``imap`` extra.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from contextlib import suppress
from typing import Any, ClassVar, Literal

from gateway.adapters import AdapterContext, AdapterHealth, Listener, ProtocolAdapter
from gateway.email_store import ImapCheckpointStore, load_checkpoint_store
from gateway.options import ReconnectPolicy
from protocol_adapters.imap_intake import ImapIntake, Verdict
from protocol_adapters.imap_options import IMAP_OPTIONS
from protocol_adapters.imap_session import ImapAccount, ImapSession, ImapSessionError

__all__ = ["ImapAdapter"]

logger = logging.getLogger("gateway.imap")

WatcherState = Literal["connecting", "idle", "polling", "handling", "backoff", "stopped"]


class ImapAdapter(ProtocolAdapter):
    """Reads one or more IMAP mailboxes and runs the `email` application on each new message."""

    protocol: ClassVar[str] = "email"
    source: ClassVar[str] = "imap"

    def __init__(self, context: AdapterContext) -> None:
        super().__init__(context)
        self.values: dict[str, Any] = IMAP_OPTIONS.parse(context.options)
        self._stopping = asyncio.Event()
        self._watchers: list[_Watcher] = []
        self._intake: ImapIntake | None = None

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> list[str]:
        """Every problem with OPTIONS (IMAP_OPTIONS), one sentence each."""
        return IMAP_OPTIONS.check(options)

    async def start(self) -> list[Listener]:
        """Start one watcher per mailbox; they connect in the background and keep trying."""
        values = self.values
        intake = self._intake = ImapIntake(self.context, values)
        checkpoints = load_checkpoint_store(values["CHECKPOINT_STORE"])
        self._watchers = [
            _Watcher(account, intake, checkpoints, self._stopping, values["RECONNECT"])
            for account in values["ACCOUNTS"]
        ]
        for watcher in self._watchers:
            watcher.task = asyncio.create_task(watcher.run(), name=f"imap:{watcher.account.key}")
        return [Listener("imap", watcher.account.url) for watcher in self._watchers]

    async def stop(self, timeout: float) -> None:
        """Let each watcher finish the message in hand, log out, then close the intake."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self._stopping.set()
        tasks = [w.task for w in self._watchers if w.task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._intake is not None:
            await self._intake.aclose(max(0.0, deadline - loop.time()))

    def health(self) -> AdapterHealth:
        """ok when every mailbox is connected; degraded when some are not; down when none is."""
        watchers = self._watchers
        if not watchers or all(w.first_attempt for w in watchers):
            return AdapterHealth("starting")
        detail = "; ".join(f"{w.account.url}: {w.state}" for w in watchers)
        connected = sum(w.connected for w in watchers)
        if connected == len(watchers):
            return AdapterHealth("ok", detail)
        return AdapterHealth("degraded" if connected else "down", detail)


class _Watcher:
    """One mailbox: connect, catch up, wait for news, repeat; reconnect after any failure."""

    def __init__(
        self,
        account: ImapAccount,
        intake: ImapIntake,
        checkpoints: ImapCheckpointStore,
        stopping: asyncio.Event,
        reconnect: ReconnectPolicy,
    ) -> None:
        self.account = account
        self.intake = intake
        self.checkpoints = checkpoints
        self.stopping = stopping
        self.backoff = reconnect.backoff()
        self.state: WatcherState = "connecting"
        self.connected = False
        self.first_attempt = True  # until the first connection succeeded or failed
        self.task: asyncio.Task[None] | None = None
        self._last_uidvalidity: int | None = None

    async def run(self) -> None:
        while not self.stopping.is_set():
            session = ImapSession(self.account)
            failed = True
            try:
                self.state = "connecting"
                await session.open()
                self.backoff.reset()  # connected: the next failure waits RECONNECT["INITIAL"]
                self.connected, self.first_attempt = True, False
                logger.info("imap %s: connected", self.account.url)
                await self._serve(session)
                failed = False
            except ImapSessionError as exc:
                logger.warning("imap %s: %s (reconnecting)", self.account.url, exc)
            except Exception:
                logger.exception("imap %s: unexpected error (reconnecting)", self.account.url)
            finally:
                self.connected = self.first_attempt = False
                await session.close()
            if failed and not self.stopping.is_set():
                self.state = "backoff"
                await self._sleep(self.backoff.next())
        self.state = "stopped"

    async def _sleep(self, seconds: float) -> None:
        with suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)

    async def _serve(self, session: ImapSession) -> None:
        last = await self._resume(session.uidvalidity)
        use_idle = self.account.use_idle and session.has_capability("IDLE")
        while not self.stopping.is_set():
            for uid in await session.unseen_after(last):
                if self.stopping.is_set():
                    return
                await self._handle(session, uid)
                last = uid
            if use_idle:
                self.state = "idle"
                await session.idle(self.account.idle_timeout, self.stopping)
            else:
                self.state = "polling"
                await self._sleep(self.account.poll_interval)

    async def _resume(self, uidvalidity: int) -> int:
        """The UID to resume after; a changed UIDVALIDITY means every UID is new: rescan."""
        if self._last_uidvalidity not in (None, uidvalidity):
            logger.warning(
                "imap %s: UIDVALIDITY changed %s -> %s, rescanning unseen mail",
                self.account.url,
                self._last_uidvalidity,
                uidvalidity,
            )
        self._last_uidvalidity = uidvalidity
        account = self.account
        return await self.checkpoints.resume_after(account.account, account.mailbox, uidvalidity)

    async def _handle(self, session: ImapSession, uid: int) -> None:
        self.state = "handling"
        raw = await session.fetch(uid)
        verdict: Verdict = "gone"
        if raw is not None:
            verdict = await self.intake.deliver(self.account, session.uidvalidity, uid, raw)
        if verdict == "done":
            await self._acknowledge(session, uid)
        # Dead-lettered and unrouted mail stays unseen; the checkpoint keeps it from looping.
        account = self.account
        await self.checkpoints.advance(account.account, account.mailbox, session.uidvalidity, uid)

    async def _acknowledge(self, session: ImapSession, uid: int) -> None:
        folder = self.account.move_to
        if folder is None:
            await session.mark_seen(uid)
        else:
            await session.move(uid, folder)
