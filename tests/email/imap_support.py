"""Helpers for the IMAP adapter tests: a recording app, the adapter on a test Dovecot, waiting."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from gateway.adapters import AdapterContext, Listener
from gateway.metrics import MetricsRegistry
from gateway.pipeline import DeadLetter
from gateway.types import Receive, Scope, Send
from protocol_adapters.imap import ImapAdapter
from routers.email import EmailToRouter, address
from tests.integration.dovecot import Dovecot

WAIT = 30.0  # generous: only there to turn a hang into a failure


def message(subject: str, *, headers: str = "", to: str = "inbox@example.com") -> bytes:
    """A small RFC 5322 message with a unique Message-ID."""
    text = (
        f"Return-Path: <customer@example.org>\r\nFrom: Customer <customer@example.org>\r\n"
        f"To: {to}\r\nSubject: {subject}\r\nMessage-ID: <{subject.replace(' ', '.')}@test>\r\n"
        f"{headers}MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"Body of {subject}.\r\n"
    )
    return text.encode()


@dataclass
class Recorder:
    """An email app recording every call; `fail` decides per subject whether to raise."""

    calls: list[tuple[dict[str, Any], bytes]] = field(default_factory=list)
    fail: Callable[[str, int], bool] = lambda subject, attempt: False
    before_return: Callable[[str], Awaitable[None]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        event = await receive()
        raw = event["raw"]
        self.calls.append((dict(scope), raw))
        subject = self.subject_of(raw)
        if self.fail(subject, scope["attempt"]):
            raise RuntimeError(f"consumer failed on {subject}")
        if self.before_return is not None:
            await self.before_return(subject)

    @staticmethod
    def subject_of(raw: bytes) -> str:
        for line in raw.decode().splitlines():
            if line.startswith("Subject: "):
                return line.removeprefix("Subject: ")
        return ""

    def subjects(self) -> list[str]:
        return [self.subject_of(raw) for _, raw in self.calls]


async def eventually(check: Callable[[], Any], what: str, timeout: float = WAIT) -> None:
    """Wait until `check()` (sync or async) is true; fail naming `what` on timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def flags(dovecot: Dovecot, mailbox: str = "INBOX") -> dict[int, set[str]]:
    return await asyncio.to_thread(dovecot.flags, mailbox)


@dataclass
class Running:
    """A started adapter and what it reported."""

    adapter: ImapAdapter
    listeners: list[Listener]
    dead: list[DeadLetter]
    metrics: MetricsRegistry

    def detail(self) -> str:
        return self.adapter.health().detail


def account(dovecot: Dovecot, **overrides: Any) -> dict[str, Any]:
    """One ACCOUNTS entry for the test Dovecot, with tiny timings."""
    entry: dict[str, Any] = {
        "HOST": "127.0.0.1",
        "PORT": dovecot.port,
        "SSL": False,
        "USERNAME": dovecot.user,
        "PASSWORD": dovecot.password,
        "IDLE_TIMEOUT": 3.0,
        "POLL_INTERVAL": 0.2,
        "TIMEOUT": 5.0,
    }
    entry.update(overrides)
    return entry


@asynccontextmanager
async def running_adapter(
    app: Recorder,
    accounts: list[dict[str, Any]],
    *,
    routes: tuple[str, ...] = (r"inbox@example\.com",),
) -> AsyncIterator[Running]:
    """An ImapAdapter on `accounts` routing `routes` to `app`; stopped afterwards."""
    dead: list[DeadLetter] = []

    async def dead_letter(letter: DeadLetter) -> None:
        dead.append(letter)

    options = {
        "ACCOUNTS": accounts,
        "RECONNECT": {"INITIAL": 0.05, "MAX": 0.5},
        "RETRY": {"ATTEMPTS": 3, "INITIAL_BACKOFF": 0.01, "MAX_BACKOFF": 0.05},
    }
    assert ImapAdapter.check_options(options) == []
    metrics = MetricsRegistry()
    router = EmailToRouter([address(pattern, app) for pattern in routes])
    context = AdapterContext(router, "imap", options, metrics, dead_letter)
    adapter = ImapAdapter(context)
    listeners = await adapter.start()
    try:
        yield Running(adapter, listeners, dead, metrics)
    finally:
        await adapter.stop(10.0)
