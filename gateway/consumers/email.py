"""`EmailConsumer` and `AsyncEmailConsumer`: handle one inbound email, reply or reject it."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from email.message import EmailMessage
from typing import Any

from gateway import email as mail
from gateway.consumers.base import AsyncConsumer, SyncConsumer
from gateway.replies import ReplyFailure, failure_policy, mark
from gateway.turns import loop_turn
from gateway.types import EmailSendEvent, Message

__all__ = ["AsyncEmailConsumer", "EmailConsumer"]

logger = logging.getLogger("gateway.email")


class _EmailMessageMixin:
    """The parsed message and read-only helpers both consumer flavours share."""

    #: Limits automatic replies per sender; None turns the limit off for this consumer.
    reply_limiter: mail.ReplyRateLimiter | None = mail.reply_limiter
    #: A reply that cannot be sent fails the message ("fail": retried, then dead-lettered;
    #: SMTP answers 451) or is only logged ("log"); ``on_failure=`` of one call overrides it.
    on_reply_failure: ReplyFailure = "fail"

    scope: Any
    raw: bytes
    message: EmailMessage

    def _take(self, event: Message) -> EmailMessage:
        self.raw = bytes(event["raw"])
        self.message = mail.parse_message(self.raw)
        return self.message

    @property
    def subject(self) -> str:
        """The decoded Subject ("" when missing)."""
        return mail.subject(self.message)

    @property
    def sender(self) -> str:
        """The From address (the envelope sender is ``scope["sender"]``)."""
        return mail.sender_address(self.message)

    @property
    def text(self) -> str | None:
        """The decoded text/plain body, None when there is none."""
        return mail.text_body(self.message)

    @property
    def html(self) -> str | None:
        """The decoded text/html body, None when there is none."""
        return mail.html_body(self.message)

    @property
    def attachments(self) -> list[mail.Attachment]:
        """The attachments, decoded."""
        return mail.attachments(self.message)

    @property
    def message_id(self) -> str | None:
        """Message-ID without angle brackets."""
        return mail.message_id(self.message)

    @property
    def in_reply_to(self) -> str | None:
        """The Message-ID this message answers, if any."""
        return mail.in_reply_to(self.message)

    @property
    def references(self) -> list[str]:
        """The thread's Message-IDs, oldest first."""
        return mail.references(self.message)

    def can_auto_reply(self) -> bool:
        """Whether the loop guard allows an automatic reply to this message."""
        refusal = mail.auto_reply_refusal(
            self.message, sender=self.scope.get("sender", ""), own_address=self.scope["recipient"]
        )
        if refusal is not None:
            logger.info("Not auto-replying to %r: %s.", self.scope.get("sender"), refusal)
        return refusal is None

    def _outgoing(self, event: EmailSendEvent, on_failure: ReplyFailure | None) -> Message:
        """The ``email.send`` to hand the adapter, carrying the reply-failure choice."""
        return mark(dict(event), failure_policy(self.on_reply_failure, on_failure))

    def _reply_event(
        self,
        body: str,
        subject: str | None,
        html: str | None,
        from_email: str | None,
        cc: Sequence[str],
        headers: Mapping[str, str] | None,
    ) -> EmailSendEvent | None:
        if not self.can_auto_reply():
            return None
        event = mail.make_reply_event(
            self.message,
            self.scope,
            body,
            subject_line=subject,
            html=html,
            from_email=from_email,
            cc=cc,
            headers=headers,
        )
        limiter = self.reply_limiter
        if limiter is not None and not limiter.allow(event["to"][0]):
            logger.warning("Not auto-replying to %r: reply rate limit reached.", event["to"][0])
            return None
        return event


class AsyncEmailConsumer(_EmailMessageMixin, AsyncConsumer):
    """Async email consumer: override `receive(message)`; `reply()` or `reject()` from there."""

    one_event_scope = True

    async def email_message(self, event: Message) -> None:
        """Parse the raw message, call `receive`, then end the scope (the mail is handled)."""
        # Parsing takes milliseconds on the event loop: one such step per pass of the loop.
        async with loop_turn(str(self.scope.get("adapter") or "email")):
            message = self._take(event)
        await self.receive(message)

    async def receive(self, message: EmailMessage) -> None:
        """Called with the parsed message; return to accept it, raise to have it retried."""
        raise NotImplementedError("Subclasses of AsyncEmailConsumer must provide receive().")

    async def reply(
        self,
        body: str,
        *,
        subject: str | None = None,
        html: str | None = None,
        from_email: str | None = None,
        cc: Sequence[str] = (),
        headers: Mapping[str, str] | None = None,
        on_failure: ReplyFailure | None = None,
    ) -> bool:
        """Reply to the sender (sent once the message is handled); False if the guard refused.

        A reply that cannot be sent fails the message unless `on_failure` (default: the
        class's ``on_reply_failure``) is ``"log"``.
        """
        event = self._reply_event(body, subject, html, from_email, cc, headers)
        if event is None:
            return False
        await self.send(self._outgoing(event, on_failure))
        return True

    async def send_mail(
        self, event: EmailSendEvent, *, on_failure: ReplyFailure | None = None
    ) -> None:
        """Send any email (an ``email.send`` event) once the message is handled; as `reply`,
        a failure fails the message unless `on_failure` is ``"log"``."""
        await self.send(self._outgoing(mail.validate_send_event(event), on_failure))

    async def reject(self, code: int = 550, reason: str = mail.DEFAULT_REJECT_REASON) -> None:
        """Refuse the message: 5xx bounces it, 4xx has the sender retry later."""
        await self.send(dict(mail.make_reject_event(code, reason)))


class EmailConsumer(_EmailMessageMixin, SyncConsumer):
    """Sync email consumer: `receive(message)` runs in a thread with Django's DB handling."""

    one_event_scope = True

    def email_message(self, event: Message) -> None:
        """Parse the raw message, call `receive`, then end the scope (the mail is handled)."""
        self.receive(self._take(event))

    def receive(self, message: EmailMessage) -> None:
        """Called with the parsed message; return to accept it, raise to have it retried."""
        raise NotImplementedError("Subclasses of EmailConsumer must provide receive().")

    def reply(
        self,
        body: str,
        *,
        subject: str | None = None,
        html: str | None = None,
        from_email: str | None = None,
        cc: Sequence[str] = (),
        headers: Mapping[str, str] | None = None,
        on_failure: ReplyFailure | None = None,
    ) -> bool:
        """Reply to the sender (sent once the message is handled); False if the guard refused.

        A reply that cannot be sent fails the message unless `on_failure` (default: the
        class's ``on_reply_failure``) is ``"log"``.
        """
        event = self._reply_event(body, subject, html, from_email, cc, headers)
        if event is None:
            return False
        self.send(self._outgoing(event, on_failure))
        return True

    def send_mail(self, event: EmailSendEvent, *, on_failure: ReplyFailure | None = None) -> None:
        """Send any email (an ``email.send`` event) once the message is handled; as `reply`,
        a failure fails the message unless `on_failure` is ``"log"``."""
        self.send(self._outgoing(mail.validate_send_event(event), on_failure))

    def reject(self, code: int = 550, reason: str = mail.DEFAULT_REJECT_REASON) -> None:
        """Refuse the message: 5xx bounces it, 4xx has the sender retry later."""
        self.send(dict(mail.make_reject_event(code, reason)))
