"""`run_email_app`: run an ``email`` application on one message and collect what it sent.

The email adapters' intake and dead-letter replay both run applications through it: the
first ``receive()`` gives ``email.message`` with the raw bytes, ``email.reject`` (the first
one counts) and ``email.send`` events are collected into an `AppResult`, and any other event
is an error. `send_mails` then sends the collected mail through Django's ``EMAIL_BACKEND``;
a mail it cannot send raises `ReplyNotSent` (gateway.replies), unless the consumer chose
``on_failure="log"`` for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from gateway import email as mail
from gateway.db import database_sync_to_async
from gateway.exceptions import UnknownMessageType
from gateway.replies import ReplyFailure, ReplyNotSent, log_unsent, logs_failure
from gateway.run_event import run_one_event
from gateway.types import ASGIApp, EmailRejectEvent, EmailScope, EmailSendEvent, Message

__all__ = ["DEFAULT_APP_TIMEOUT", "AppResult", "run_email_app", "send_mails"]

logger = logging.getLogger("gateway.email")

DEFAULT_APP_TIMEOUT: Final = 120.0


@dataclass
class AppResult:
    """What the application sent while it handled one message."""

    rejection: EmailRejectEvent | None = None
    outbox: list[EmailSendEvent] = field(default_factory=list)
    #: What a failure to send each mail of `outbox` does, in the same order.
    policies: list[ReplyFailure] = field(default_factory=list)

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
            self.policies.append("log" if logs_failure(message) else "fail")
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


async def send_mails(
    mails: Sequence[EmailSendEvent], policies: Sequence[ReplyFailure] = ()
) -> None:
    """Send `mails` in order through Django's ``EMAIL_BACKEND``; `ReplyNotSent` lists those
    that failed. A mail whose policy (same order; ``"fail"`` when missing) is ``"log"`` is
    only logged when it fails."""
    if not mails:  # the usual case: building the thread wrapper costs ~30 us per message
        return
    send = database_sync_to_async(mail.send_mail_event)
    unsent: list[EmailSendEvent] = []
    error: Exception | None = None
    for index, event in enumerate(mails):
        try:
            await send(event)
        except Exception as exc:
            if index < len(policies) and policies[index] == "log":
                log_unsent(event, exc)
                continue
            logger.warning("Could not send email to %s: %r", event["to"], exc)
            unsent.append(event)
            error = exc
    if unsent:
        raise ReplyNotSent(unsent, f"the EMAIL_BACKEND failed: {error!r}") from error
