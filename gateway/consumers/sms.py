"""`SmsConsumer` and `AsyncSmsConsumer`: handle one inbound text message, reply, send.

A reply or send that cannot be sent raises at the call, in the consumer; uncaught, it fails
the message like any consumer error (retried, then dead-lettered with the unsent text), unless
the consumer chose ``on_reply_failure = "log"`` or ``on_failure="log"`` (gateway.replies).
Nothing is sent to a number that opted out: a reply to it is dropped with a log line, a send
raises `SmsOptedOut`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.consumers.base import AsyncConsumer, SyncConsumer
from gateway.replies import ReplyFailure, failure_policy, mark, reply_failures
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
    #: A reply or send that cannot be sent fails the message ("fail": retried, then
    #: dead-lettered) or is only logged ("log"); ``on_failure=`` of one call overrides it.
    on_reply_failure: ReplyFailure = "fail"

    def _policy(self, on_failure: ReplyFailure | None) -> ReplyFailure:
        return failure_policy(self.on_reply_failure, on_failure)

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

    async def reply(self, body: str, *, on_failure: ReplyFailure | None = None) -> None:
        """Answer the sender (in the webhook response while it is still open, else over REST).

        A reply that cannot be sent raises here unless `on_failure` (default: the class's
        ``on_reply_failure``) is ``"log"``; a sender that opted out gets nothing.
        """
        policy = self._policy(on_failure)
        event = mark({"type": "sms.reply", "body": body}, policy)
        with reply_failures(event, policy):
            await super().send(event)

    async def send(  # type: ignore[override]
        self,
        to: str,
        body: str,
        *,
        from_: str | None = None,
        media_urls: Sequence[str] = (),
        on_failure: ReplyFailure | None = None,
    ) -> None:
        """Send a new message through the provider's REST API; raises SmsOptedOut or
        SmsSendError, unless `on_failure` (default: ``on_reply_failure``) is ``"log"``."""
        policy = self._policy(on_failure)
        event = mark(_send_event(to, body, from_, media_urls), policy)
        with reply_failures(event, policy):
            await super().send(event)

    async def sms_message(self, message: Message) -> None:
        """The message arrived: call `receive`, then finish."""
        await self.receive(message.get("body", ""))


class SmsConsumer(_SmsScopeMixin, SyncConsumer):
    """Sync SMS consumer, run in a thread with Django's DB handling; same hooks as the async one."""

    one_event_scope = True

    def receive(self, body: str) -> None:
        """Called with the message text; override it."""

    def reply(self, body: str, *, on_failure: ReplyFailure | None = None) -> None:
        """Answer the sender (in the webhook response while it is still open, else over REST).

        A reply that cannot be sent raises here unless `on_failure` (default: the class's
        ``on_reply_failure``) is ``"log"``; a sender that opted out gets nothing.
        """
        policy = self._policy(on_failure)
        event = mark({"type": "sms.reply", "body": body}, policy)
        with reply_failures(event, policy):
            self.base_send(event)

    def send(  # type: ignore[override]
        self,
        to: str,
        body: str,
        *,
        from_: str | None = None,
        media_urls: Sequence[str] = (),
        on_failure: ReplyFailure | None = None,
    ) -> None:
        """Send a new message through the provider's REST API; raises SmsOptedOut or
        SmsSendError, unless `on_failure` (default: ``on_reply_failure``) is ``"log"``."""
        policy = self._policy(on_failure)
        event = mark(_send_event(to, body, from_, media_urls), policy)
        with reply_failures(event, policy):
            self.base_send(event)

    def sms_message(self, message: Message) -> None:
        """The message arrived: call `receive`, then finish."""
        self.receive(message.get("body", ""))
