"""Replaying a dead letter keeps the reply rules: unsent replies fail it, opted-out numbers
get nothing, and a consumer's ``on_failure="log"`` holds there too."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import pytest
from django.test import override_settings

from django_app.deadletters import areplay, store_dead_letter
from django_app.models.deadletters import DeadLetter
from django_app.models.sms import DatabaseSmsStore
from gateway import AsyncEmailConsumer, AsyncSmsConsumer, EmailToRouter, ProtocolTypeRouter, address
from gateway.pipeline import DeadLetter as Letter
from gateway.replies import ReplyNotSent
from protocol_adapters.email_common import scope_from_raw
from tests.email.outbound import closed_port, send_replies_to
from tests.sms.support import twilio_stub

pytestmark = pytest.mark.django_db(transaction=True)
SMS_BACKEND = "protocol_adapters.twilio_sms.TwilioSmsAdapter"
SENDER = "+447700900123"


class Tickets(AsyncEmailConsumer):
    reply_limiter = None

    async def receive(self, message: EmailMessage) -> None:
        await self.reply("Ticket opened.")
        await self.reply("Survey: how did we do?", on_failure="log")


class Texts(AsyncSmsConsumer):
    async def receive(self, body: str) -> None:
        await self.reply(f"got {body}")


application = ProtocolTypeRouter(
    {
        "email": EmailToRouter([address(r"support@example\.com", Tickets.as_asgi())]),
        "sms": Texts.as_asgi(),
    }
)


async def stored(protocol: str, scope: dict[str, Any], payload: bytes) -> DeadLetter:
    letter = Letter(protocol, "k", scope, payload, "RuntimeError('down')", 3, datetime.now(UTC))
    await store_dead_letter(letter)
    return await DeadLetter.objects.aget(protocol=protocol)


def raw_mail() -> bytes:
    message = EmailMessage()
    message["From"] = "ada@customer.example"
    message["To"] = "support@example.com"
    message["Subject"] = "Printer on fire"
    message["Message-ID"] = "<m1@customer.example>"
    message.set_content("Please help.")
    return message.as_bytes()


async def test_a_mail_replay_whose_reply_cannot_be_sent_fails_with_the_reply(
    settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "gateway.replies")
    raw = raw_mail()
    scope = scope_from_raw(
        raw, source="imap", adapter="inbox", sender="ada@customer.example",
        recipient="support@example.com",
    )  # fmt: skip
    dead = await stored("email", dict(scope), raw)
    with closed_port() as nowhere:
        send_replies_to(settings, nowhere)
        with pytest.raises(ReplyNotSent, match="1 reply not sent"):
            await areplay(dead, app=application)
    await dead.arefresh_from_db()
    assert dead.replayed_at is None
    assert "Ticket opened." in dead.error  # the one that had to go out
    assert "Survey" not in dead.error  # the consumer chose to only log that one
    assert "Survey: how did we do?" in caplog.text


async def test_a_replayed_sms_reply_to_a_number_that_opted_out_is_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "gateway.deadletter")
    await DatabaseSmsStore().set_opted_out(SENDER, True)
    scope = {
        "type": "sms", "provider": "twilio", "adapter": "texts", "from": SENDER,
        "to": "+15005550006", "message_id": "SMreplay2", "media": [],
    }  # fmt: skip
    async with twilio_stub() as stub:
        gateway = {"ADAPTERS": {"texts": {"BACKEND": SMS_BACKEND, "OPTIONS": stub.options()}}}
        with override_settings(GATEWAY=gateway):
            dead = await stored("sms", scope, b"STATUS sensor-1")
            await areplay(dead, app=application)
    assert stub.requests == []
    assert f"replayed SMS to {SENDER} not sent: the number opted out" in caplog.text
    await dead.arefresh_from_db()
    assert dead.replayed_at is not None
