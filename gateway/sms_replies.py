"""One inbound SMS in flight, and its replies through the provider's REST API.

`SmsWebhookAdapter` collects what the application replies while the webhook is open: in the
answer for a provider with a reply format, else in `Exchange.later`, sent by `RestReplies`
once the application returned and the webhook was answered. A reply after the answer goes
out at once, in the consumer's ``reply()``. As for every protocol (gateway.replies), a reply
that cannot be sent fails the message unless the consumer chose ``on_failure="log"``; nothing
is replied to a number that opted out (a log line, not a failure). A WhatsApp sender is
answered on WhatsApp.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.exceptions import SmsOptedOut, SmsSendError
from gateway.replies import ReplyNotSent, log_unsent, logs_failure
from gateway.sms import SmsStore
from gateway.sms_rest import RestSmsSender
from gateway.sms_wire import reply_number
from gateway.types import Message

__all__ = ["Exchange", "RestReplies"]

logger = logging.getLogger("gateway.sms")


@dataclass
class Exchange:
    """One inbound message in flight: its scope, body, and the replies collected so far."""

    scope: dict[str, Any]
    body: str
    in_answer: list[Message] = field(default_factory=list)
    later: list[Message] = field(default_factory=list)
    settled: asyncio.Event = field(default_factory=asyncio.Event)
    """The application returned, or the dispatcher has the outcome: the webhook may be answered."""
    answered: asyncio.Event = field(default_factory=asyncio.Event)


class RestReplies:
    """Sends replies through the provider's REST API, from the number the text was sent to."""

    def __init__(self, sender: RestSmsSender, store: SmsStore) -> None:
        self.sender = sender
        self.store = store

    async def send_later(self, exchange: Exchange) -> None:
        """The replies left for after the answer; raises ReplyNotSent for those that failed."""
        unsent: list[Message] = []
        error: Exception | None = None
        for message in exchange.later:
            try:
                await self.send(exchange.scope, message)
            except Exception as exc:
                if logs_failure(message):
                    log_unsent(message, exc)
                    continue
                unsent.append(message)
                error = exc
        if unsent:
            raise ReplyNotSent(unsent, repr(error)) from error

    async def send(self, scope: Mapping[str, Any], message: Message) -> None:
        """One reply; raises SmsSendError (a number that opted out meanwhile is logged)."""
        if not self.sender.configured:
            raise SmsSendError(
                f"SMS {scope['message_id']}: this reply goes over {self.sender.provider}'s REST "
                f"API, and {self.sender.unconfigured}."
            )
        to, from_ = reply_number(scope, "from"), reply_number(scope, "to")
        try:
            await self.sender.send(to, str(message["body"]), from_=from_)
        except SmsOptedOut:
            await self.opted_out(scope)

    async def opted_out(self, scope: Mapping[str, Any]) -> bool:
        """True, with a log line, when the sender opted out: nothing is replied to it."""
        to = str(scope["from"])
        if not await self.store.is_opted_out(to):
            return False
        logger.info(
            "SMS %s: reply to %s not sent: the number opted out (STOP).", scope["message_id"], to
        )
        return True
