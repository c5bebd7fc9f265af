"""One IMAP connection to one mailbox, on aioimaplib, with no await left unguarded.

aioimaplib never fails what is pending when the server closes the connection: its
``connection_lost`` only calls ``conn_lost_cb``. A command in flight (``uid("store")``,
``uid("copy")``, ``uid("move")`` and ``idle()`` carry no timeout at all), the IDLE command
and ``wait_server_push`` then wait forever, or until their 29-minute timer. So every call here
races the library's awaitable against a connection-lost event and a timeout, and any failure
ends the session: the adapter drops it and connects again.

This module and ``protocol_adapters.imap`` are the only ones importing aioimaplib (GPL-3.0,
the optional ``imap`` extra).
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from collections.abc import Awaitable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, TypeVar

from gateway.exceptions import GatewayError

try:
    import aioimaplib
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "The IMAP adapter needs aioimaplib: pip install 'django-protocol-gateway[imap]'"
    ) from exc

__all__ = ["ImapAccount", "ImapSession", "ImapSessionError"]

logger = logging.getLogger("gateway.imap")

_T = TypeVar("_T")
_UIDVALIDITY = re.compile(rb"\[UIDVALIDITY (\d+)\]")


class ImapSessionError(GatewayError, ConnectionError):
    """The IMAP session is unusable (lost, timed out, or refused); connect again."""


@dataclass(frozen=True)
class ImapAccount:
    """One mailbox to watch, from an entry of OPTIONS["ACCOUNTS"]."""

    host: str
    port: int
    ssl: bool
    username: str
    password: str
    mailbox: str
    recipient: str
    on_success: str
    poll_interval: float
    idle_timeout: float
    use_idle: bool
    timeout: float
    ssl_cafile: str | None = None
    recipient_headers: tuple[str, ...] = ()

    @property
    def account(self) -> str:
        """user@host:port, the checkpoint's account key."""
        return f"{self.username}@{self.host}:{self.port}"

    @property
    def key(self) -> str:
        """account/mailbox: the dispatch key that keeps one mailbox in order."""
        return f"{self.account}/{self.mailbox}"

    @property
    def url(self) -> str:
        scheme = "imaps" if self.ssl else "imap"
        return f"{scheme}://{self.username}@{self.host}:{self.port}/{self.mailbox}"

    @property
    def move_to(self) -> str | None:
        """The folder handled mail moves to, or None to flag it \\Seen."""
        if self.on_success.startswith("move:"):
            return self.on_success.removeprefix("move:")
        return None


def quote_mailbox(name: str) -> str:
    """A mailbox name as an IMAP astring: quoted when it holds anything but atom characters."""
    if name and re.fullmatch(r"[A-Za-z0-9._/&+-]+", name):
        return name
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


class ImapSession:
    """A logged-in connection with one mailbox selected; every call times out or fails fast."""

    def __init__(self, account: ImapAccount) -> None:
        self.account = account
        self.uidvalidity = 0
        self._lost = asyncio.Event()
        self._client: Any = None

    # Connecting.

    async def open(self) -> None:
        """Connect, log in and select the mailbox; read its UIDVALIDITY."""
        account = self.account
        self._client = aioimaplib.IMAP4(
            host=account.host,
            port=account.port,
            timeout=account.timeout,
            conn_lost_cb=self._on_lost,
            ssl_context=self._ssl_context(),
        )
        await self._call(self._client.wait_hello_from_server())
        await self._ok("LOGIN", self._client.login(account.username, account.password))
        response = await self._ok("SELECT", self._client.select(quote_mailbox(account.mailbox)))
        self.uidvalidity = _uidvalidity(response.lines)

    def _ssl_context(self) -> ssl.SSLContext | None:
        if not self.account.ssl:
            return None
        return ssl.create_default_context(cafile=self.account.ssl_cafile)

    def _on_lost(self, exc: Exception | None) -> None:
        self._lost.set()

    @property
    def lost(self) -> bool:
        return self._lost.is_set()

    def has_capability(self, name: str) -> bool:
        """Whether the server announced `name` (after login, so MOVE and UIDPLUS show)."""
        capabilities = self._client.protocol.capabilities if self._client else set()
        return any(c.strip("[]").upper() == name for c in capabilities)

    async def close(self, timeout: float = 1.0) -> None:
        """Log out politely if the connection still stands, then drop it."""
        client, self._client = self._client, None
        if client is None:
            return
        if not self.lost and client.protocol.transport is not None:
            with suppress(Exception):
                await self._call(client.logout(), timeout)
        transport = client.protocol.transport
        if transport is not None:
            transport.close()
        # Tasks aioimaplib started (connect, greeting, IDLE) must not outlive the connection;
        # a connect still pending would otherwise open a socket nobody closes.
        connecting = getattr(client, "_client_task", None)
        for task in (connecting, *client.tasks, *client.protocol.tasks):
            if task is not None and not task.done():
                task.cancel()
        idle_timer = getattr(client, "_idle_waiter", None)
        if idle_timer is not None:
            idle_timer.cancel()

    # Guarding every await.

    async def _call(self, awaitable: Awaitable[_T], timeout: float | None = None) -> _T:
        """Await `awaitable`; raise ImapSessionError on timeout or as soon as the link drops."""
        task = asyncio.ensure_future(awaitable)
        lost = asyncio.ensure_future(self._lost.wait())
        limit = self.account.timeout if timeout is None else timeout
        try:
            await asyncio.wait({task, lost}, timeout=limit, return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
            if not task.done():
                task.cancel()
        if not task.done() or task.cancelled():
            reason = "connection lost" if self._lost.is_set() else f"no answer in {limit:g}s"
            raise ImapSessionError(f"{self.account.url}: {reason}")
        try:
            return task.result()
        except (aioimaplib.AioImapException, OSError, TimeoutError) as exc:
            raise ImapSessionError(f"{self.account.url}: {exc!r}") from exc

    async def _ok(self, what: str, awaitable: Awaitable[Any]) -> Any:
        response = await self._call(awaitable)
        if response.result != "OK":
            detail = b" ".join(bytes(line) for line in response.lines).decode(errors="replace")
            raise ImapSessionError(f"{self.account.url}: {what} failed: {detail}")
        return response

    # Mailbox operations, all by UID.

    async def unseen_after(self, last_uid: int) -> list[int]:
        """UIDs of unseen messages above `last_uid`, in order (SEARCH without CHARSET)."""
        search = self._client.uid_search("UNSEEN", f"UID {last_uid + 1}:*", charset=None)
        response = await self._ok("SEARCH", search)
        tokens = (token for line in response.lines[:-1] for token in bytes(line).split())
        uids = {int(token) for token in tokens if token.isdigit()}
        # "n:*" always matches the highest UID, even when it is below n.
        return sorted(uid for uid in uids if uid > last_uid)

    async def fetch(self, uid: int) -> bytes | None:
        """The raw message, fetched with BODY.PEEK[] so it stays unseen; None if it is gone."""
        response = await self._ok("FETCH", self._client.uid("fetch", str(uid), "(BODY.PEEK[])"))
        for line in response.lines:
            if isinstance(line, bytearray):
                return bytes(line)
        return None

    async def mark_seen(self, uid: int) -> None:
        await self._ok("STORE", self._client.uid("store", str(uid), "+FLAGS.SILENT", r"(\Seen)"))

    async def move(self, uid: int, folder: str) -> None:
        """Flag \\Seen, then MOVE when the server has it, else COPY, \\Deleted and EXPUNGE."""
        target = quote_mailbox(folder)
        await self.mark_seen(uid)  # so the folder shows handled mail as read
        if self.has_capability("MOVE"):
            await self._ok("MOVE", self._client.uid("move", str(uid), target))
            return
        await self._ok("COPY", self._client.uid("copy", str(uid), target))
        deleted = self._client.uid("store", str(uid), "+FLAGS.SILENT", r"(\Deleted)")
        await self._ok("STORE", deleted)
        if self.has_capability("UIDPLUS"):
            await self._ok("EXPUNGE", self._client.uid("expunge", str(uid)))
        else:
            await self._ok("EXPUNGE", self._client.expunge())

    async def idle(self, seconds: float, stopping: asyncio.Event) -> bool:
        """IDLE for up to `seconds`; True when the server announced new mail."""
        client = self._client
        idle_task = await self._call(client.idle_start(timeout=seconds + 60))
        try:
            return await self._idle_until_news(seconds, stopping)
        finally:
            if not self.lost:
                client.idle_done()
                # A dropped link makes this raise; the caller reconnects either way.
                await self._call(idle_task)

    async def _idle_until_news(self, seconds: float, stopping: asyncio.Event) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while (remaining := deadline - loop.time()) > 0 and not stopping.is_set():
            push = asyncio.ensure_future(self._client.wait_server_push(timeout=remaining))
            stop = asyncio.ensure_future(stopping.wait())
            try:
                # Raced with the lost event too: the push never comes when the server closes.
                done = await self._call(_first(push, stop), remaining + self.account.timeout)
            finally:
                push.cancel()
                stop.cancel()
            if push in done and not push.cancelled() and push.exception() is None:
                lines = push.result()
                if any(b"BYE" in line for line in lines):
                    raise ImapSessionError(f"{self.account.url}: server said BYE")
                if any(line.endswith(b"EXISTS") for line in lines):
                    return True
        return False


async def _first(*futures: asyncio.Future[Any]) -> set[asyncio.Future[Any]]:
    done, _ = await asyncio.wait(futures, return_when=asyncio.FIRST_COMPLETED)
    return done


def _uidvalidity(lines: list[bytes]) -> int:
    for line in lines:
        match = _UIDVALIDITY.search(bytes(line))
        if match:
            return int(match.group(1))
    raise ImapSessionError("SELECT answered without UIDVALIDITY")
