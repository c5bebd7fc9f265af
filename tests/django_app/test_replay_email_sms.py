"""Dead letters of mail and text messages replay through the application, after the fact."""

from __future__ import annotations

from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import pytest
from django.core import mail as django_mail
from django.test import override_settings

from django_app.deadletters import areplay, store_dead_letter
from django_app.models.deadletters import DeadLetter
from gateway import (
    AsyncEmailConsumer,
    AsyncSmsConsumer,
    EmailToRouter,
    ProtocolTypeRouter,
    SMSFromRouter,
    address,
    phone,
)
from gateway.pipeline import DeadLetter as Letter
from protocol_adapters.email_common import scope_from_raw
from tests.sms.support import twilio_stub

pytestmark = pytest.mark.django_db(transaction=True)
SMS_BACKEND = "protocol_adapters.twilio_sms.TwilioSmsAdapter"
seen: list[Any] = []
broken = {"now": True}


class Tickets(AsyncEmailConsumer):
    async def receive(self, message: EmailMessage) -> None:
        if broken["now"]:
            raise RuntimeError("ticket database down")
        seen.append((self.scope["attempt"], self.subject))
        await self.reply("Ticket opened.")


class Texts(AsyncSmsConsumer):
    async def receive(self, body: str) -> None:
        if broken["now"]:
            raise RuntimeError("device registry down")
        seen.append((self.sender, body))
        await self.reply(f"got {body}")


application = ProtocolTypeRouter(
    {
        "email": EmailToRouter([address(r"support@example\.com", Tickets.as_asgi())]),
        "sms": SMSFromRouter([phone("+44", Texts.as_asgi())]),
    }
)


@pytest.fixture(autouse=True)
def _reset() -> None:
    seen.clear()
    broken["now"] = False


def raw_mail() -> bytes:
    message = EmailMessage()
    message["From"] = "ada@customer.example"
    message["To"] = "support@example.com"
    message["Subject"] = "Printer on fire"
    message["Message-ID"] = "<m1@customer.example>"
    message.set_content("Please help.")
    return message.as_bytes()


async def stored(protocol: str, scope: dict[str, Any], payload: bytes) -> DeadLetter:
    letter = Letter(
        protocol=protocol,
        key="k",
        scope=scope,
        payload=payload,
        error="RuntimeError('down')",
        attempts=3,
        failed_at=datetime.now(UTC),
    )
    await store_dead_letter(letter)
    return await DeadLetter.objects.aget(protocol=protocol)


@override_settings(EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend")
async def test_a_mail_dead_letter_replays_and_its_reply_is_sent() -> None:
    raw = raw_mail()
    scope = scope_from_raw(
        raw, source="smtp", adapter="mx", sender="ada@customer.example",
        recipient="support@example.com", recipients=["support@example.com"],
    )  # fmt: skip
    dead = await stored("email", dict(scope), raw)
    await areplay(dead, app=application)
    assert seen == [(2, "Printer on fire")]  # the scope says it is not the first attempt
    assert len(django_mail.outbox) == 1
    assert django_mail.outbox[0].to == ["ada@customer.example"]
    assert django_mail.outbox[0].extra_headers["Auto-Submitted"] == "auto-replied"
    await dead.arefresh_from_db()
    assert dead.replay_count == 1
    assert dead.replayed_at is not None


async def test_a_failed_mail_replay_keeps_the_letter_with_the_new_error() -> None:
    raw = raw_mail()
    scope = scope_from_raw(
        raw, source="imap", adapter="inbox", sender="", recipient="support@example.com"
    )
    dead = await stored("email", dict(scope), raw)
    broken["now"] = True
    with pytest.raises(RuntimeError, match="ticket database down"):
        await areplay(dead, app=application)
    await dead.arefresh_from_db()
    assert dead.replayed_at is None
    assert "ticket database down" in dead.error
    assert dead.replay_count == 1


async def test_an_sms_dead_letter_replays_and_its_reply_goes_out_over_rest() -> None:
    scope = {
        "type": "sms", "provider": "twilio", "adapter": "texts", "from": "+447700900123",
        "to": "+15005550006", "message_id": "SMreplay1", "media": [],
    }  # fmt: skip
    async with twilio_stub() as stub:
        gateway = {
            "ADAPTERS": {"texts": {"BACKEND": SMS_BACKEND, "OPTIONS": stub.options(STORE="memory")}}
        }
        with override_settings(GATEWAY=gateway):
            dead = await stored("sms", scope, b"STATUS sensor-1")
            await areplay(dead, app=application)
    assert seen == [("+447700900123", "STATUS sensor-1")]
    assert len(stub.requests) == 1
    assert stub.requests[0]["To"] == ["+447700900123"]
    assert stub.requests[0]["Body"] == ["got STATUS sensor-1"]
    await dead.arefresh_from_db()
    assert dead.replayed_at is not None
