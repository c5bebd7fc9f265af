"""`EmailCommunicator`: deliver one email to an application in-process, as an adapter would."""

from __future__ import annotations

from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any, Literal

from gateway import email as mail
from gateway.testing.application import ApplicationCommunicator
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


class EmailCommunicator(ApplicationCommunicator):
    """Runs an ``email`` application on one message; `deliver()` returns its `EmailOutcome`.

    `message` is an `EmailMessage`, raw bytes or text. The recipient defaults to the first
    To address and the envelope sender to the From address, as a mail server would see them.
    """

    def __init__(
        self,
        application: ASGIApp,
        message: EmailMessage | bytes | str,
        *,
        recipient: str | None = None,
        sender: str | None = None,
        source: Literal["smtp", "imap"] = "smtp",
        adapter: str = "test",
        **envelope: Any,
    ) -> None:
        self.raw = _as_bytes(message)
        parsed = mail.parse_message(self.raw)
        to = recipient if recipient is not None else mail.sender_address(parsed, "To")
        scope = mail.make_scope(
            source=source,
            adapter=adapter,
            sender=sender if sender is not None else mail.sender_address(parsed),
            recipient=to,
            message_id=mail.message_id(parsed),
            **envelope,
        )
        super().__init__(application, dict(scope))

    async def deliver(self, timeout: float = 1) -> EmailOutcome:
        """Send ``email.message``, wait until the application returns, and collect its events.

        Raises what the application raised (an adapter would answer 451 and retry).
        """
        await self.send_input({"type": "email.message", "raw": self.raw})
        await self.wait(timeout)
        outcome = EmailOutcome()
        while not self.output_queue.empty():
            event = self.output_queue.get_nowait()
            if event["type"] == "email.reject" and outcome.rejected is None:
                code = event.get("code", mail.DEFAULT_REJECT_CODE)
                reason = event.get("reason", mail.DEFAULT_REJECT_REASON)
                outcome.rejected = mail.make_reject_event(code, reason)
            elif event["type"] == "email.send":
                outcome.sent.append(mail.validate_send_event(event))
        return outcome
