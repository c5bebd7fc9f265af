"""`SmsCommunicator`: hand one text message to an `sms` application and collect its answers."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.sms import build_sms_scope
from gateway.testing.application import ApplicationCommunicator
from gateway.types import ASGIApp, Message, SmsMedia


@dataclass
class SmsResult:
    """What the application did with the message: replies (TwiML) and outbound sends."""

    replies: list[str] = field(default_factory=list)
    sent: list[Message] = field(default_factory=list)


def sms_scope(
    from_: str,
    to: str,
    *,
    message_id: str | None = None,
    media: Sequence[SmsMedia] = (),
    country: str | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """An ``sms`` scope as the SMS adapters make it (docs/specs/sms.md)."""
    return build_sms_scope(
        provider="test",
        adapter="test",
        from_=from_,
        to=to,
        message_id=message_id or "SM" + uuid.uuid4().hex,
        media=media,
        country=country,
        extra=extra,
    )


class SmsCommunicator(ApplicationCommunicator):
    """Runs an application for one inbound text message; `receive_result` says what it did.

    ``sms.send`` events are recorded, not sent: nothing reaches a provider.
    """

    def __init__(
        self,
        application: ASGIApp,
        from_: str,
        to: str,
        body: str,
        *,
        message_id: str | None = None,
        media: Sequence[SmsMedia] = (),
        country: str | None = None,
        extra: Mapping[str, str] | None = None,
    ) -> None:
        scope = sms_scope(
            from_, to, message_id=message_id, media=media, country=country, extra=extra
        )
        self.body = body
        self.started = False
        super().__init__(application, scope)

    async def receive_result(self, timeout: float = 1) -> SmsResult:
        """Send the message, wait for the application to return, and return what it sent."""
        if not self.started:
            self.started = True
            await self.send_input({"type": "sms.message", "body": self.body})
        await self.wait(timeout)
        result = SmsResult()
        while not self.output_queue.empty():
            message = self.output_queue.get_nowait()
            if message["type"] == "sms.reply":
                result.replies.append(message["body"])
            elif message["type"] == "sms.send":
                result.sent.append(message)
            else:
                raise AssertionError(f"An sms application sent {message['type']!r}.")
        return result
