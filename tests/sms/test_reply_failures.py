"""Replies and sends that cannot go out, and replies to numbers that opted out.

Signed Twilio webhooks against a running gateway; Twilio's REST API is the stub at the HTTP
boundary (tests/sms/support.py).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from gateway.consumers import AsyncSmsConsumer, SmsConsumer
from routers import ProtocolTypeRouter
from tests.sms.support import inbound, running_gateway, twilio_stub, twiml_messages

WAIT = 10.0  # generous, only to avoid hangs
SENDER = "+447700900123"
TWO_TRIES = {"ATTEMPTS": 2, "INITIAL_BACKOFF": 0.01, "MAX_BACKOFF": 0.05}


class Echo(AsyncSmsConsumer):
    async def receive(self, body: str) -> None:
        await self.reply(f"Echo: {body}")


async def test_no_reply_to_a_number_that_opted_out(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "gateway.sms")
    app = ProtocolTypeRouter({"sms": Echo.as_asgi()})
    async with running_gateway(app) as gw:
        before = await gw.post(inbound(SENDER, body="hello"))
        assert twiml_messages(before.text) == ["Echo: hello"]
        await gw.post(inbound(SENDER, body="STOP"))
        after = await gw.post(inbound("+44 7700 900123", body="hello again"))
        assert after.status_code == 200
        assert twiml_messages(after.text) == []
        await gw.post(inbound(SENDER, body="START"))
        back = await gw.post(inbound(SENDER, body="hi"))
        assert twiml_messages(back.text) == ["Echo: hi"]
    assert gw.dead_letters == []  # an opted-out number is not a failure
    assert any(
        "reply to +447700900123 not sent: the number opted out" in record.getMessage()
        for record in caplog.records
    )


async def test_no_late_reply_over_rest_to_a_number_that_opted_out() -> None:
    release = asyncio.Event()
    finished = asyncio.Event()

    class Slow(AsyncSmsConsumer):
        async def receive(self, body: str) -> None:
            await release.wait()
            await self.reply("late answer")
            finished.set()

    app = ProtocolTypeRouter({"sms": Slow.as_asgi()})
    async with twilio_stub() as stub, running_gateway(app, stub.options(DEADLINE=0.2)) as gw:
        response = await gw.post(inbound(SENDER, body="hello"))
        assert twiml_messages(response.text) == []
        await gw.post(inbound(SENDER, body="STOP"))
        release.set()
        await asyncio.wait_for(finished.wait(), WAIT)
    assert stub.requests == []
    assert gw.dead_letters == []


async def test_a_late_reply_that_cannot_be_sent_fails_and_is_dead_lettered() -> None:
    release = asyncio.Event()
    attempts: list[int] = []

    class Slow(AsyncSmsConsumer):
        async def receive(self, body: str) -> None:
            attempts.append(len(attempts) + 1)
            await release.wait()
            await self.reply("late answer")

    app = ProtocolTypeRouter({"sms": Slow.as_asgi()})
    # No ACCOUNT_SID: a reply after the deadline has no way out.
    async with running_gateway(app, {"DEADLINE": 0.2, "RETRY": TWO_TRIES}) as gw:
        form = inbound(SENDER)
        response = await gw.post(form)
        assert twiml_messages(response.text) == []
        release.set()
        await asyncio.wait_for(_until(lambda: gw.dead_letters), WAIT)
        stored = gw.adapter.store.messages[form["MessageSid"]]
    assert attempts == [1, 2]  # the reply is raised in the consumer: a retry runs it again
    [letter] = gw.dead_letters
    assert letter.attempts == 2
    assert "ACCOUNT_SID and AUTH_TOKEN are not configured" in letter.error
    assert 'Unsent reply: {"body": "late answer", "type": "sms.reply"}' in letter.error
    assert stored.status == "failed"


@pytest.mark.django_db(transaction=True)  # a sync consumer runs with Django's DB handling
async def test_a_send_twilio_refuses_fails_the_message_with_the_text_attached() -> None:
    class Forward(SmsConsumer):
        def receive(self, body: str) -> None:
            self.send("+15005550000", f"Forwarded: {body}")  # the stub refuses ...000

    app = ProtocolTypeRouter({"sms": Forward.as_asgi()})
    async with twilio_stub() as stub, running_gateway(app, stub.options(RETRY=TWO_TRIES)) as gw:
        response = await gw.post(inbound(SENDER, body="meter reading 42"))
        assert twiml_messages(response.text) == []
        await asyncio.wait_for(_until(lambda: gw.dead_letters), WAIT)
    assert len(stub.requests) == 2  # one per try of the message; a 400 is not resent
    [letter] = gw.dead_letters
    assert "SmsSendError" in letter.error
    assert "Invalid 'To' Phone Number" in letter.error
    assert '"body": "Forwarded: meter reading 42"' in letter.error
    assert '"to": "+15005550000"' in letter.error


async def test_a_send_failing_once_goes_out_on_the_retry() -> None:
    class Forward(AsyncSmsConsumer):
        async def receive(self, body: str) -> None:
            await self.send("+15005550123", f"Forwarded: {body}")

    app = ProtocolTypeRouter({"sms": Forward.as_asgi()})
    async with twilio_stub() as stub:
        stub.fail_next = 1  # Twilio answers 500 once; SEND_RETRY is 1 try
        options = stub.options(attempts=1, RETRY=TWO_TRIES)
        async with running_gateway(app, options) as gw:
            await gw.post(inbound(SENDER, body="hi"))
            await asyncio.wait_for(_until(lambda: len(stub.requests) == 2), WAIT)
    assert [request["Body"] for request in stub.requests] == [["Forwarded: hi"]] * 2
    assert gw.dead_letters == []


class LogsOnly(AsyncSmsConsumer):
    on_reply_failure = "log"

    async def receive(self, body: str) -> None:
        await self.send("+15005550000", "refused")
        await self.reply("still answered")


class LogsThisSend(AsyncSmsConsumer):
    async def receive(self, body: str) -> None:
        await self.send("+15005550000", "refused", on_failure="log")
        await self.reply("still answered")


@pytest.mark.parametrize("consumer", [LogsOnly, LogsThisSend])
async def test_a_consumer_may_choose_to_only_log_a_failed_send(
    consumer: type[AsyncSmsConsumer], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "gateway.replies")
    app = ProtocolTypeRouter({"sms": consumer.as_asgi()})
    async with twilio_stub() as stub, running_gateway(app, stub.options()) as gw:
        response = await gw.post(inbound(SENDER))
    assert twiml_messages(response.text) == ["still answered"]
    assert gw.dead_letters == []
    [record] = [r for r in caplog.records if r.name == "gateway.replies"]
    assert '"body": "refused"' in record.getMessage()


async def _until(check: Any) -> None:
    while not check():
        await asyncio.sleep(0.02)


async def test_a_send_to_a_number_that_opted_out_is_dead_lettered_without_retries() -> None:
    class Forward(AsyncSmsConsumer):
        async def receive(self, body: str) -> None:
            if body != "STOP":
                await self.send(SENDER, "ping")  # the sender itself, who opted out

    app = ProtocolTypeRouter({"sms": Forward.as_asgi()})
    retries = {"ATTEMPTS": 3, "INITIAL_BACKOFF": 0.01, "MAX_BACKOFF": 0.05}
    async with twilio_stub() as stub, running_gateway(app, stub.options(RETRY=retries)) as gw:
        await gw.post(inbound(SENDER, body="STOP"))
        await gw.post(inbound(SENDER, body="hello"))
        await asyncio.wait_for(_until(lambda: gw.dead_letters), WAIT)
    [letter] = gw.dead_letters
    assert letter.attempts == 1  # only the recipient can opt in again: no retry helps
    assert "SmsOptedOut" in letter.error
    assert stub.requests == []
