"""`SmsCommunicator`: hand one text message to an `sms` application and collect its answers."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from gateway.sms import build_sms_scope, run_sms_app
from gateway.testing.application import run_in_test_context
from gateway.types import ASGIApp, Message, SmsMedia, SmsScope


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
    provider: str = "test",
    adapter: str | None = None,
) -> SmsScope:
    """An ``sms`` scope as the SMS adapters make it (docs/specs/sms.md); `provider` names the
    provider it came from ("twilio", "vonage", "plivo", "telnyx"), `adapter` its adapter."""
    return build_sms_scope(
        provider=provider,
        adapter=adapter or provider,
        from_=from_,
        to=to,
        message_id=message_id or "SM" + uuid.uuid4().hex,
        media=media,
        country=country,
        extra=extra,
    )


class SmsCommunicator:
    """Runs an application for one inbound text message; `receive_result` says what it did.

    The application runs as the SMS adapters run it (`gateway.sms.run_sms_app`): an event
    other than ``sms.reply`` / ``sms.send`` raises. ``sms.send`` events are recorded, not
    sent: nothing reaches a provider. ``provider="vonage"`` (or another) builds the scope as
    that provider's adapter would.
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
        provider: str = "test",
        adapter: str | None = None,
    ) -> None:
        self.application = application
        self.scope = sms_scope(
            from_,
            to,
            message_id=message_id,
            media=media,
            country=country,
            extra=extra,
            provider=provider,
            adapter=adapter,
        )
        self.body = body

    async def receive_result(self, timeout: float = 1) -> SmsResult:
        """Run the application on the message until it returns; return what it sent."""
        result = SmsResult()

        async def sent(message: Message) -> None:
            if message["type"] == "sms.reply":
                result.replies.append(message["body"])
            else:
                result.sent.append(message)

        await run_in_test_context(
            run_sms_app(self.application, self.scope, self.body, sent), timeout
        )
        return result
