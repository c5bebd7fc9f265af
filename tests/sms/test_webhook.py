"""Signed Twilio webhooks against a running gateway: routing, TwiML, refusals, dedup."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from gateway.consumers import AsyncSmsConsumer
from gateway.exceptions import SmsOptedOut
from routers import ProtocolTypeRouter
from routers.sms import SMSFromRouter, phone
from tests.sms.support import (
    STATUS,
    inbound,
    running_gateway,
    sign,
    twilio_stub,
    twiml_messages,
)

WAIT = 10.0  # generous, only to avoid hangs


class Seen:
    """What the consumers saw, per consumer name."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any], str]] = []

    def names(self) -> list[str]:
        return [name for name, _, _ in self.calls]


def make_consumer(seen: Seen, name: str = "uk") -> Any:
    class Named(AsyncSmsConsumer):
        async def receive(self, body: str) -> None:
            seen.calls.append((name, dict(self.scope), body))
            await self.reply(f"{name}: {body}")

    return Named.as_asgi()


def make_app(seen: Seen) -> Any:
    def consumer(name: str) -> Any:
        return make_consumer(seen, name)

    return ProtocolTypeRouter(
        {
            "sms": SMSFromRouter(
                [
                    phone("+44", consumer("uk")),
                    phone("+1", consumer("us")),
                    phone("+1416", consumer("toronto")),
                ],
                default=consumer("intl"),
            )
        }
    )


async def test_senders_reach_the_right_consumer_and_replies_are_twiml() -> None:
    seen = Seen()
    async with running_gateway(make_app(seen)) as gw:
        cases = [
            ("+447700900123", "uk"),
            ("+12125550123", "us"),
            ("+14165550123", "toronto"),
            ("whatsapp:+447700900456", "uk"),
            ("72345", "intl"),
        ]
        for sender, expected in cases:
            response = await gw.post(inbound(sender, body=f"from {sender}"))
            assert response.status_code == 200, response.text
            assert response.headers["content-type"].startswith("text/xml")
            assert twiml_messages(response.text) == [f"{expected}: from {sender}"]
    assert seen.names() == ["uk", "us", "toronto", "uk", "intl"]
    whatsapp = seen.calls[3][1]
    assert whatsapp["from"] == "+447700900456"
    assert whatsapp["whatsapp"] is True
    assert seen.calls[2][1]["url_route"]["kwargs"] == {"prefix": "+1416"}
    assert seen.calls[0][1]["country"] == "GB"


async def test_refusals_never_reach_a_consumer() -> None:
    seen = Seen()
    async with running_gateway(make_app(seen)) as gw:
        form = inbound("+447700900123")
        bad = await gw.post(form, signature="not-the-signature")
        assert bad.status_code == 403
        missing = await gw.post(form, signature="")
        assert missing.status_code == 403
        wrong_token = await gw.post(form, token="another-token")
        assert wrong_token.status_code == 403
        get = await gw.client.get(gw.url + "/sms/twilio/")
        assert get.status_code == 405
        assert get.headers["allow"] == "POST"
        no_from = {key: value for key, value in form.items() if key != "From"}
        bad_form = await gw.post(no_from)
        assert bad_form.status_code == 400
        assert "From" in bad_form.text
        first = await gw.post(form)
        replay = await gw.post(form)
        assert twiml_messages(first.text) == ["uk: hi"]
        assert replay.status_code == 200
        assert twiml_messages(replay.text) == []
    assert seen.names() == ["uk"]


async def test_without_an_auth_token_every_webhook_is_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen = Seen()
    with caplog.at_level(logging.WARNING, logger="gateway.sms"):
        async with running_gateway(make_app(seen), {"AUTH_TOKEN": None}) as gw:
            form = inbound("+447700900123")
            for token in ("", "any-token"):  # an empty key signs nothing
                refused = await gw.post(form, token=token)
                assert refused.status_code == 403
                assert "AUTH_TOKEN" in refused.text
    assert seen.names() == []
    assert 'OPTIONS["AUTH_TOKEN"] is not set: /sms/twilio/ refuses every webhook' in caplog.text


async def test_an_unrouted_text_is_dead_lettered_at_once_with_one_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen = Seen()
    uk_only = ProtocolTypeRouter({"sms": SMSFromRouter([phone("+44", make_consumer(seen))])})
    retry = {"RETRY": {"ATTEMPTS": 3, "INITIAL_BACKOFF": 0.01}}
    with caplog.at_level(logging.INFO, logger="gateway"):
        async with running_gateway(uk_only, retry) as gw:
            response = await gw.post(inbound("+12125550123"))
            assert response.status_code == 200
            assert twiml_messages(response.text) == []
            for _ in range(100):
                if gw.dead_letters:
                    break
                await asyncio.sleep(0.05)
    assert seen.names() == []
    [letter] = gw.dead_letters
    assert letter.attempts == 1  # no route now, no route on a retry
    assert letter.error.startswith("RouteNotFound(")
    dispatch = [record for record in caplog.records if record.name == "gateway.dispatch"]
    assert [record.exc_info for record in dispatch] == [None]
    assert "not retried: RouteNotFound" in dispatch[0].getMessage()


async def test_signature_behind_a_tls_terminating_proxy() -> None:
    seen = Seen()
    public = "https://sms.example.com/sms/twilio/"
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "sms.example.com"}
    async with running_gateway(make_app(seen), {"TRUST_FORWARDED_HEADERS": True}) as gw:
        ok = await gw.post(inbound("+447700900123"), signed_url=public, headers=headers)
        assert ok.status_code == 200
        spoofed = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example.com"}
        refused = await gw.post(inbound("+447700900123"), signed_url=public, headers=spoofed)
        assert refused.status_code == 403
    async with running_gateway(make_app(seen)) as gw:
        # Forwarded headers are not trusted unless configured.
        untrusted = await gw.post(inbound("+447700900123"), signed_url=public, headers=headers)
        assert untrusted.status_code == 403
    async with running_gateway(make_app(seen), {"PUBLIC_URL": "https://sms.example.com"}) as gw:
        query = "?tenant=7"
        form = inbound("+12125550123")
        response = await gw.client.post(
            gw.url + "/sms/twilio/" + query,
            data=form,
            headers={"X-Twilio-Signature": sign(public + query, form)},
        )
        assert response.status_code == 200
    assert seen.names() == ["uk", "us"]


async def test_long_unicode_bodies_media_and_unknown_fields() -> None:
    seen = Seen()
    body = "😀" * 800 + "x" * 800  # 1,600 characters, astral emoji included
    media = {
        "NumMedia": "2",
        "MediaUrl0": "https://api.twilio.com/media/ME0",
        "MediaContentType0": "image/jpeg",
        "MediaUrl1": "https://api.twilio.com/media/ME1",
        "MediaContentType1": "video/mp4",
        "FromCountry": "GB",
        "SomethingNew": "kept",
    }
    async with running_gateway(make_app(seen)) as gw:
        response = await gw.post(inbound("+447700900123", body=body, **media))
        assert response.status_code == 200
        assert twiml_messages(response.text) == [f"uk: {body}"]
        bad_count = await gw.post(inbound("+447700900123", NumMedia="lots"))
        assert bad_count.status_code == 200
    _, scope, received = seen.calls[0]
    assert received == body
    assert scope["media"] == [
        {"url": "https://api.twilio.com/media/ME0", "content_type": "image/jpeg"},
        {"url": "https://api.twilio.com/media/ME1", "content_type": "video/mp4"},
    ]
    assert scope["extra"]["SomethingNew"] == "kept"
    assert scope["extra"]["AccountSid"].startswith("AC")
    assert "MediaUrl0" not in scope["extra"]
    assert seen.calls[1][1]["media"] == []


async def test_consumer_errors_answer_empty_twiml_and_dead_letter() -> None:
    class Broken(AsyncSmsConsumer):
        async def receive(self, body: str) -> None:
            await self.reply("never sent")
            raise RuntimeError("consumer broke")

    app = ProtocolTypeRouter({"sms": Broken.as_asgi()})
    async with running_gateway(app) as gw:
        form = inbound("+447700900123")
        response = await gw.post(form)
        assert response.status_code == 200
        assert twiml_messages(response.text) == []
        assert len(gw.dead_letters) == 1
        assert gw.dead_letters[0].key == "+447700900123"
        assert "consumer broke" in gw.dead_letters[0].error
        stored = gw.adapter.store.messages[form["MessageSid"]]
        assert stored.status == "failed"
        assert "consumer broke" in stored.error


async def test_past_the_deadline_answer_empty_and_reply_over_rest() -> None:
    release = asyncio.Event()
    finished = asyncio.Event()

    class Slow(AsyncSmsConsumer):
        async def receive(self, body: str) -> None:
            await release.wait()
            await self.reply("late answer")
            finished.set()

    app = ProtocolTypeRouter({"sms": Slow.as_asgi()})
    async with twilio_stub() as stub, running_gateway(app, stub.options(DEADLINE=0.2)) as gw:
        response = await gw.post(inbound("+447700900123"))
        assert response.status_code == 200
        assert twiml_messages(response.text) == []
        release.set()
        await asyncio.wait_for(finished.wait(), WAIT)
        await asyncio.wait_for(stub.received.wait(), WAIT)
    assert stub.requests[0]["To"] == ["+447700900123"]
    assert stub.requests[0]["Body"] == ["late answer"]


async def test_keywords_opt_out_and_back_in() -> None:
    outcomes: list[str] = []

    class Notifier(AsyncSmsConsumer):
        async def receive(self, body: str) -> None:
            try:
                await self.send("+447700900123", "alert")
            except SmsOptedOut:
                outcomes.append("opted out")
            else:
                outcomes.append("sent")

    app = ProtocolTypeRouter({"sms": Notifier.as_asgi()})
    options = {"HELP_TEXT": "Call 0800 000 000."}
    async with twilio_stub() as stub, running_gateway(app, stub.options(**options)) as gw:
        stop = await gw.post(inbound("+44 7700 900123", body=" stop "))
        assert twiml_messages(stop.text) == []
        await gw.post(inbound("+12125550123", body="notify"))
        help_reply = await gw.post(inbound("+447700900123", body="HELP"))
        assert twiml_messages(help_reply.text) == ["Call 0800 000 000."]
        await gw.post(inbound("+447700900123", body="START"))
        await gw.post(inbound("+12125550123", body="notify"))
    assert outcomes == ["opted out", "sent"]
    assert [request["To"] for request in stub.requests] == [["+447700900123"]]


async def test_status_callbacks_only_move_forward() -> None:
    class Sender(AsyncSmsConsumer):
        async def receive(self, body: str) -> None:
            await self.send("+447700900123", "your code is 1234")

    app = ProtocolTypeRouter({"sms": Sender.as_asgi()})
    async with twilio_stub() as stub, running_gateway(app, stub.options()) as gw:
        await gw.post(inbound("+12125550123"))
        store = gw.adapter.store
        outbound = [m for m in store.messages.values() if m.direction == "outbound"]
        assert len(outbound) == 1
        sid = outbound[0].sid
        assert outbound[0].status == "queued"
        for status in ("sending", "delivered", "sent", "queued"):
            form = {"MessageSid": sid, "MessageStatus": status, "AccountSid": "AC1"}
            response = await gw.post(form, path=STATUS)
            assert response.status_code == 204
        assert store.messages[sid].status == "delivered"
        unsigned = await gw.post(
            {"MessageSid": sid, "MessageStatus": "failed"}, path=STATUS, signature="x"
        )
        assert unsigned.status_code == 403
        incomplete = await gw.post({"MessageSid": sid}, path=STATUS)
        assert incomplete.status_code == 400
        assert store.messages[sid].status == "delivered"


async def test_messages_from_one_sender_never_run_concurrently() -> None:
    active: dict[str, int] = {}
    most: dict[str, int] = {}
    handled: list[str] = []

    class Recorder(AsyncSmsConsumer):
        async def receive(self, body: str) -> None:
            active[self.sender] = active.get(self.sender, 0) + 1
            most[self.sender] = max(most.get(self.sender, 0), active[self.sender])
            await asyncio.sleep(0.01)
            active[self.sender] -= 1
            handled.append(body)

    app = ProtocolTypeRouter({"sms": Recorder.as_asgi()})
    async with running_gateway(app) as gw:
        forms = [inbound("+447700900123", body=f"uk{i}") for i in range(4)]
        forms += [inbound("+12125550123", body=f"us{i}") for i in range(4)]
        responses = await asyncio.gather(*(gw.post(form) for form in forms))
    assert all(response.status_code == 200 for response in responses)
    assert sorted(handled) == sorted(form["Body"] for form in forms)
    assert most == {"+447700900123": 1, "+12125550123": 1}
