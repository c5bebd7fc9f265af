"""Outbound SMS through twilio's async client, against a local stub of the Messages API."""

from __future__ import annotations

import base64

import pytest
from django.test import override_settings

from gateway.exceptions import SmsOptedOut, SmsSendError
from gateway.sms import MemorySmsStore, asend_sms, send_sms
from protocol_adapters.twilio_rest import TwilioSender
from tests.sms.support import ACCOUNT_SID, BACKEND, TOKEN, twilio_stub


async def test_send_posts_to_the_messages_api_with_basic_auth() -> None:
    store = MemorySmsStore()
    async with twilio_stub() as stub:
        sender = TwilioSender(stub.options(), store)
        try:
            sent = await sender.send(
                "+447700900123", "hello 😀", media_urls=["https://example.com/a.png"]
            )
        finally:
            await sender.close()
    request = stub.requests[0]
    assert request["_account"] == ACCOUNT_SID
    expected = base64.b64encode(f"{ACCOUNT_SID}:{TOKEN}".encode()).decode()
    assert request["_auth"] == f"Basic {expected}"
    assert request["To"] == ["+447700900123"]
    assert request["From"] == ["+15005550006"]
    assert request["Body"] == ["hello 😀"]
    assert request["MediaUrl"] == ["https://example.com/a.png"]
    assert sent.sid.startswith("SM")
    assert store.messages[sent.sid].direction == "outbound"
    assert store.messages[sent.sid].status == "queued"


async def test_5xx_answers_are_retried_until_accepted() -> None:
    async with twilio_stub() as stub:
        stub.fail_next = 2
        sender = TwilioSender(stub.options(attempts=3), MemorySmsStore())
        try:
            sent = await sender.send("+447700900123", "retry me")
        finally:
            await sender.close()
    assert len(stub.requests) == 3
    assert sent.status == "queued"


async def test_retries_are_bounded() -> None:
    async with twilio_stub() as stub:
        stub.fail_next = 10
        stub.fail_status = 503
        sender = TwilioSender(stub.options(attempts=2), MemorySmsStore())
        try:
            with pytest.raises(SmsSendError, match="after 2 attempts") as caught:
                await sender.send("+447700900123", "never")
        finally:
            await sender.close()
    assert len(stub.requests) == 2
    assert caught.value.status == 503


async def test_time_outs_are_retried() -> None:
    async with twilio_stub() as stub:
        stub.stall_next = 1
        sender = TwilioSender(stub.options(SEND_TIMEOUT=0.3), MemorySmsStore())
        try:
            sent = await sender.send("+447700900123", "after a stall")
        finally:
            await sender.close()
    assert len(stub.requests) == 2
    assert sent.sid.startswith("SM")


async def test_4xx_answers_are_not_retried() -> None:
    async with twilio_stub() as stub:
        sender = TwilioSender(stub.options(), MemorySmsStore())
        try:
            with pytest.raises(SmsSendError, match="Invalid 'To'") as caught:
                await sender.send("+447700900000", "bad number")
        finally:
            await sender.close()
    assert len(stub.requests) == 1
    assert (caught.value.status, caught.value.code) == (400, 21211)


async def test_opted_out_numbers_are_never_sent_to() -> None:
    store = MemorySmsStore()
    await store.set_opted_out("whatsapp:+44 7700 900123", True)
    async with twilio_stub() as stub:
        sender = TwilioSender(stub.options(), store)
        try:
            with pytest.raises(SmsOptedOut, match=r"\+447700900123 opted out"):
                await sender.send("+447700900123", "promo")
            await store.set_opted_out("+447700900123", False)
            await sender.send("whatsapp:+447700900123", "welcome back")
        finally:
            await sender.close()
    assert len(stub.requests) == 1
    assert stub.requests[0]["From"] == ["whatsapp:+15005550006"]


async def test_messaging_service_and_missing_configuration() -> None:
    async with twilio_stub() as stub:
        options = stub.options(FROM=None, MESSAGING_SERVICE_SID="MG" + "1" * 32)
        sender = TwilioSender(options, MemorySmsStore())
        try:
            await sender.send("+447700900123", "via service")
        finally:
            await sender.close()
        assert stub.requests[0]["MessagingServiceSid"] == ["MG" + "1" * 32]
        unconfigured = TwilioSender({"AUTH_TOKEN": TOKEN, "FROM": "+1"}, MemorySmsStore())
        with pytest.raises(SmsSendError, match="ACCOUNT_SID"):
            await unconfigured.send("+447700900123", "x")
        with pytest.raises(SmsSendError, match="1600"):
            await TwilioSender(stub.options(), MemorySmsStore()).send("+44", "x" * 1601)
    assert len(stub.requests) == 1


async def test_asend_sms_uses_the_configured_adapter() -> None:
    async with twilio_stub() as stub:
        options = stub.options(STORE="memory")
        gateway = {"ADAPTERS": {"texts": {"BACKEND": BACKEND, "OPTIONS": options}}}
        with override_settings(GATEWAY=gateway):
            sent = await asend_sms("+447700900123", "from anywhere")
            with pytest.raises(Exception, match="no adapter 'other'"):
                await asend_sms("+447700900123", "x", adapter="other")
    assert sent.to == "+447700900123"
    assert stub.requests[0]["Body"] == ["from anywhere"]


async def test_send_sms_refuses_to_block_an_event_loop() -> None:
    with pytest.raises(RuntimeError, match="await asend_sms"):
        send_sms("+447700900123", "x")
