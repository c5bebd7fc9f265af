"""`SmsConsumer` and `AsyncSmsConsumer`: handle one inbound text message, reply, send."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.consumers.base import AsyncConsumer, SyncConsumer
from gateway.types import Message, SmsMedia


def _send_event(to: str, body: str, from_: str | None, media_urls: Sequence[str]) -> Message:
    message: Message = {"type": "sms.send", "to": to, "body": body}
    if from_ is not None:
        message["from"] = from_
    if media_urls:
        message["media_urls"] = list(media_urls)
    return message


class _SmsScopeMixin:
    """Shortcuts to the scope of the message being handled."""

    scope: Any

    @property
    def sender(self) -> str:
        """Who sent the message: E.164, or a short code / sender id."""
        return str(self.scope["from"])

    @property
    def recipient(self) -> str:
        """The number the message was sent to."""
        return str(self.scope["to"])

    @property
    def media(self) -> list[SmsMedia]:
        """Attached media, each ``{"url": ..., "content_type": ...}``."""
        return list(self.scope.get("media", []))


class AsyncSmsConsumer(_SmsScopeMixin, AsyncConsumer):
    """Async SMS consumer: `receive(body)` is called once; answer with `reply` or `send`."""

    one_event_scope = True

    async def receive(self, body: str) -> None:
        """Called with the message text; override it."""

    async def reply(self, body: str) -> None:
        """Answer the sender (in the webhook response while it is still open)."""
        await super().send({"type": "sms.reply", "body": body})

    async def send(  # type: ignore[override]
        self,
        to: str,
        body: str,
        *,
        from_: str | None = None,
        media_urls: Sequence[str] = (),
    ) -> None:
        """Send a new message through the provider's REST API; raises SmsSendError."""
        await super().send(_send_event(to, body, from_, media_urls))

    async def sms_message(self, message: Message) -> None:
        """The message arrived: call `receive`, then finish."""
        await self.receive(message.get("body", ""))


class SmsConsumer(_SmsScopeMixin, SyncConsumer):
    """Sync SMS consumer, run in a thread with Django's DB handling; same hooks as the async one."""

    one_event_scope = True

    def receive(self, body: str) -> None:
        """Called with the message text; override it."""

    def reply(self, body: str) -> None:
        """Answer the sender (in the webhook response while it is still open)."""
        self.base_send({"type": "sms.reply", "body": body})

    def send(  # type: ignore[override]
        self,
        to: str,
        body: str,
        *,
        from_: str | None = None,
        media_urls: Sequence[str] = (),
    ) -> None:
        """Send a new message through the provider's REST API; raises SmsSendError."""
        self.base_send(_send_event(to, body, from_, media_urls))

    def sms_message(self, message: Message) -> None:
        """The message arrived: call `receive`, then finish."""
        self.receive(message.get("body", ""))
