"""`run_email_app`: run an ``email`` application on one message and collect what it sent.

The email adapters' intake and dead-letter replay both run applications through it: the
first ``receive()`` gives ``email.message`` with the raw bytes, ``email.reject`` (the first
one counts) and ``email.send`` events are collected into an `AppResult`, and any other event
is an error.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Final

from gateway import email as mail
from gateway.exceptions import UnknownMessageType
from gateway.run_event import run_one_event
from gateway.types import ASGIApp, EmailRejectEvent, EmailScope, EmailSendEvent, Message

__all__ = ["DEFAULT_APP_TIMEOUT", "AppResult", "run_email_app"]

DEFAULT_APP_TIMEOUT: Final = 120.0


@dataclass
class AppResult:
    """What the application sent while it handled one message."""

    rejection: EmailRejectEvent | None = None
    outbox: list[EmailSendEvent] = field(default_factory=list)

    async def collect(self, message: Message) -> None:
        """The application's ``send``: keep the first rejection and every mail to send."""
        kind = message.get("type")
        if kind == "email.reject":
            if self.rejection is None:
                code = message.get("code", mail.DEFAULT_REJECT_CODE)
                reason = message.get("reason", mail.DEFAULT_REJECT_REASON)
                self.rejection = mail.make_reject_event(code, reason)
        elif kind == "email.send":
            self.outbox.append(mail.validate_send_event(message))
        else:
            raise UnknownMessageType(f"An email application cannot send {kind!r} events.")


async def run_email_app(
    app: ASGIApp,
    scope: EmailScope,
    raw: bytes,
    timeout: float = DEFAULT_APP_TIMEOUT,
    *,
    standalone: bool = False,
) -> AppResult:
    """Run `app` on one ``email`` scope until it returns; raise what it raised, or TimeoutError.

    In an adapter a second ``receive()`` waits until the adapter gives up on the application
    (`timeout`); `standalone` (a test communicator, a replay: nothing around to stop) answers
    it with ``email.disconnect`` at once, as the other protocols' runners do.
    """
    result = AppResult()
    gone = None if standalone else asyncio.Event()
    try:
        async with asyncio.timeout(timeout):
            event: Message = {"type": "email.message", "raw": raw}
            await run_one_event(app, scope, event, result.collect, stopped=gone)
    finally:
        if gone is not None:
            gone.set()
    return result
