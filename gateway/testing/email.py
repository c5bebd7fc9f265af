"""`EmailCommunicator`: deliver one email to an application in-process, as an adapter would."""

from __future__ import annotations

from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from gateway import email as mail
from gateway.email_run import run_email_app
from gateway.testing.application import run_in_test_context
from gateway.types import ASGIApp, EmailRejectEvent, EmailSendEvent


@dataclass
class EmailOutcome:
    """What the application did with the message: rejected it or not, what it mailed."""

    rejected: EmailRejectEvent | None = None
    sent: list[EmailSendEvent] = field(default_factory=list)

    @property
    def handled(self) -> bool:
        """True when the application returned without rejecting the message."""
        return self.rejected is None


def _as_bytes(message: EmailMessage | bytes | str) -> bytes:
    if isinstance(message, EmailMessage):
        return message.as_bytes()
    if isinstance(message, str):
        return message.encode("utf-8")
    return message


class EmailCommunicator:
    """Runs an ``email`` application on one message; `deliver()` returns its `EmailOutcome`.

    `message` is an `EmailMessage`, raw bytes or text. The recipient defaults to the first
    To address and the envelope sender to the From address, as a mail server would see them.
    The application runs exactly as the SMTP and IMAP adapters run it (`run_email_app`): an
    event other than ``email.reject`` / ``email.send`` raises `UnknownMessageType`.
    `source` names the intake: ``"smtp"``, ``"imap"``, or a mail provider whose webhook
    posted it (``source="postmark"``), as `protocol_adapters.email_webhooks` builds it.
    """

    def __init__(
        self,
        application: ASGIApp,
        message: EmailMessage | bytes | str,
        *,
        recipient: str | None = None,
        sender: str | None = None,
        source: str = "smtp",
        adapter: str = "test",
        **envelope: Any,
    ) -> None:
        self.application = application
        self.raw = _as_bytes(message)
        parsed = mail.parse_message(self.raw)
        to = recipient if recipient is not None else mail.sender_address(parsed, "To")
        self.scope = mail.build_email_scope(
            source=source,
            adapter=adapter,
            sender=sender if sender is not None else mail.sender_address(parsed),
            recipient=to,
            message_id=mail.message_id(parsed),
            **envelope,
        )

    async def deliver(self, timeout: float = 1) -> EmailOutcome:
        """Run the application on the message until it returns; collect what it sent.

        Raises what the application raised (an adapter would answer 451 and retry).
        """
        coroutine = run_email_app(
            self.application, self.scope, self.raw, timeout=timeout + 1, standalone=True
        )
        result = await run_in_test_context(coroutine, timeout)
        return EmailOutcome(rejected=result.rejection, sent=list(result.outbox))
