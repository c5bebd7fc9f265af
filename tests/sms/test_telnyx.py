"""Telnyx messaging webhooks signed with ed25519 as Telnyx signs them, against a running gateway
and a stub of Telnyx's Messages API on 127.0.0.1 (reached through the telnyx SDK)."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from nacl.signing import SigningKey

from gateway.consumers import AsyncSmsConsumer
from gateway.exceptions import SmsSendError
from gateway.sms import MemorySmsStore
from gateway.testing import SmsCommunicator
from protocol_adapters.telnyx_sms import TELNYX_OPTIONS, TelnyxSender, TelnyxSmsAdapter
from routers import ProtocolTypeRouter
from tests.sms.providers import (
    ProviderGateway,
    RestStub,
    Seen,
    notifier_app,
    rest_stub,
    routed_app,
    running_provider,
)

BACKEND = "protocol_adapters.telnyx_sms.TelnyxSmsAdapter"
KEY = SigningKey.generate()
PUBLIC_KEY = base64.b64encode(bytes(KEY.verify_key)).decode()
OURS = "+13125550100"


def signed(body: bytes, key: SigningKey = KEY, at: float | None = None) -> dict[str, str]:
    """Telnyx's headers: ed25519 over "{timestamp}|{body}", base64 (its published algorithm)."""
    timestamp = str(int(at if at is not None else time.time()))
    signature = key.sign(timestamp.encode() + b"|" + body).signature
    return {
        "telnyx-signature-ed25519": base64.b64encode(signature).decode(),
        "telnyx-timestamp": timestamp,
        "content-type": "application/json",
    }


def event(kind: str, payload: dict[str, Any]) -> bytes:
    document = {
        "data": {
            "event_type": kind,
            "id": str(uuid.uuid4()),
            "occurred_at": "2026-12-03T06:00:00.000+00:00",
            "payload": payload,
            "record_type": "event",
        },
        "meta": {"attempt": 1, "delivered_to": "https://sms.example.com/sms/telnyx/"},
    }
    return json.dumps(document).encode()


def inbound(from_: str, text: str = "hi", **extra: Any) -> dict[str, Any]:
    """A message.received payload with a fresh id."""
    return {
        "id": str(uuid.uuid4()),
        "direction": "inbound",
        "type": "SMS",
        "from": {"phone_number": from_, "carrier": "T-Mobile USA", "line_type": "Wireless"},
        "to": [{"phone_number": OURS, "status": "webhook_delivered"}],
        "text": text,
        "media": [],
        "parts": 1,
        "encoding": "GSM-7",
        "messaging_profile_id": "400176b3-6a4a-4d0d-8ee5-4b1bd4a3e3f1",
        **extra,
    }


async def post(gw: ProviderGateway, body: bytes, path: str = "/sms/telnyx/", **sign: Any) -> Any:
    return await gw.client.post(gw.url + path, content=body, headers=signed(body, **sign))


async def telnyx_api(record: dict[str, Any]) -> tuple[int, Any]:
    """Telnyx's answer to POST /messages: the message, queued; 422 for a bad number."""
    if str(record["to"]).endswith("000"):
        errors = [{"code": "40310", "title": "Invalid 'to' address"}]
        return 422, {"errors": errors}
    data = {
        "id": str(uuid.uuid4()),
        "record_type": "message",
        "direction": "outbound",
        "from": {"phone_number": record.get("from")},
        "to": [{"phone_number": record["to"], "status": "queued"}],
        "text": record.get("text"),
    }
    return 200, {"data": data}


@asynccontextmanager
async def telnyx(app: Any, **options: Any) -> AsyncIterator[tuple[ProviderGateway, RestStub]]:
    async with rest_stub("POST /messages", telnyx_api) as stub:
        settings = {
            "PUBLIC_KEY": PUBLIC_KEY,
            "API_KEY": "KEY0123456789",
            "FROM": OURS,
            "API_BASE_URL": stub.url,
            "SEND_RETRY": {"ATTEMPTS": 3, "INITIAL_BACKOFF": 0.01, "MAX_BACKOFF": 0.05},
            **options,
        }
        async with running_provider(app, BACKEND, settings) as gw:
            yield gw, stub


async def test_signed_texts_reach_the_routed_consumer_and_replies_go_over_the_api() -> None:
    seen = Seen()
    media = [{"url": "https://media.telnyx.test/a.jpg", "content_type": "image/jpeg"}]
    async with telnyx(routed_app(seen)) as (gw, stub):
        uk = await post(gw, event("message.received", inbound("+447700900123", "from the UK")))
        assert uk.status_code == 204, uk.text
        mms = inbound("+12125550123", "look", media=media, type="MMS")
        us = await post(gw, event("message.received", mms))
        assert us.status_code == 204, us.text
        await stub.wait_for(2)
    assert seen.names() == ["uk", "us"]
    scope = seen.calls[0][1]
    assert (scope["provider"], scope["from"], scope["to"]) == ("telnyx", "+447700900123", OURS)
    assert scope["extra"]["parts"] == "1"
    assert seen.calls[1][1]["media"] == media
    replies = {(r["to"], r["from"], r["text"]) for r in stub.requests}
    assert replies == {
        ("+447700900123", OURS, "uk: from the UK"),
        ("+12125550123", OURS, "us: look"),
    }
    assert stub.requests[0]["_headers"]["Authorization"] == "Bearer KEY0123456789"


async def test_refusals_never_reach_the_application() -> None:
    seen = Seen()
    async with telnyx(routed_app(seen)) as (gw, stub):
        body = event("message.received", inbound("+447700900123"))
        url = gw.url + "/sms/telnyx/"
        tampered = body.replace(b'"hi"', b'"HI"')
        forged = await gw.client.post(url, content=tampered, headers=signed(body))
        assert forged.status_code == 403
        assert "Signature verification failed" in forged.text
        unsigned = await gw.client.post(url, content=body)
        assert unsigned.status_code == 403
        other_key = await post(gw, body, key=SigningKey.generate())
        assert other_key.status_code == 403
        stale = await post(gw, body, at=time.time() - 600)  # a replay of an old request
        assert stale.status_code == 403
        get = await gw.client.get(url)
        assert (get.status_code, get.headers["allow"]) == (405, "POST")
        not_json = await post(gw, b"{not json")
        assert not_json.status_code == 400
        no_from = await post(gw, event("message.received", inbound("")))
        assert no_from.status_code == 400
        first = await post(gw, body)
        replayed = await post(gw, body)  # Telnyx's retry: a fresh signature, the same message
        assert (first.status_code, replayed.status_code) == (204, 204)
        other = await post(gw, event("message.received.unknown", inbound("+447700900123")))
        assert other.status_code == 204
        await stub.wait_for(1)
    assert seen.names() == ["uk"]
    assert len(stub.requests) == 1


async def test_without_the_public_key_every_webhook_is_refused() -> None:
    seen = Seen()
    async with telnyx(routed_app(seen), PUBLIC_KEY=None) as (gw, _):
        refused = await post(gw, event("message.received", inbound("+447700900123")))
        assert refused.status_code == 403
        assert "PUBLIC_KEY" in refused.text
    assert seen.names() == []
    [risk] = TelnyxSmsAdapter.deploy_risks({})
    assert (risk.id, "PUBLIC_KEY" in risk.message) == ("gateway.W104", True)


async def test_an_application_error_is_answered_and_dead_lettered() -> None:
    seen = Seen()
    async with telnyx(routed_app(seen, fail=True)) as (gw, stub):
        payload = inbound("+447700900123")
        response = await post(gw, event("message.received", payload))
        assert response.status_code == 204
    [letter] = gw.dead_letters
    assert (letter.scope["provider"], "consumer broke" in letter.error) == ("telnyx", True)
    assert gw.adapter.store.messages[payload["id"]].status == "failed"
    assert stub.requests == []


async def test_a_long_message_telnyx_joined_is_delivered_once_whole() -> None:
    seen = Seen()
    text = "Telnyx joins the parts of a long message. " * 8
    payload = inbound("+447700900123", text, parts=3)
    async with telnyx(routed_app(seen)) as (gw, stub):
        for _ in range(2):  # delivered, then retried by Telnyx
            assert (await post(gw, event("message.received", payload))).status_code == 204
        await stub.wait_for(1)
    assert [body for _, _, body in seen.calls] == [text]
    assert seen.calls[0][1]["extra"]["parts"] == "3"
    assert [r["text"] for r in stub.requests] == [f"uk: {text}"]


async def test_past_the_deadline_the_answer_goes_and_the_reply_follows() -> None:
    release = asyncio.Event()

    class Slow(AsyncSmsConsumer):
        async def receive(self, body: str) -> None:
            await release.wait()
            await self.reply("late answer")

    app = ProtocolTypeRouter({"sms": Slow.as_asgi()})
    async with telnyx(app, DEADLINE=0.2) as (gw, stub):
        response = await post(gw, event("message.received", inbound("+447700900123")))
        assert (response.status_code, stub.requests) == (204, [])
        release.set()
        await stub.wait_for(1)
    assert (stub.requests[0]["to"], stub.requests[0]["text"]) == ("+447700900123", "late answer")


async def test_message_sent_and_finalized_events_move_the_status_forward() -> None:
    class Sender(AsyncSmsConsumer):
        async def receive(self, body: str) -> None:
            await self.send("+447700900123", "your code is 1234")

    app = ProtocolTypeRouter({"sms": Sender.as_asgi()})
    async with telnyx(app, PUBLIC_URL="https://sms.example.com") as (gw, stub):
        await post(gw, event("message.received", inbound("+12125550123")))
        await stub.wait_for(1)
        assert stub.requests[0]["webhook_url"] == "https://sms.example.com/sms/telnyx/status/"
        store = gw.adapter.store
        [sent] = [m for m in store.messages.values() if m.direction == "outbound"]
        assert sent.status == "queued"
        for kind, status in [
            ("message.sent", "sent"),
            ("message.finalized", "delivered"),
            ("message.sent", "sent"),
            ("message.finalized", "delivery_failed"),
        ]:
            to = [{"phone_number": "+447700900123", "status": status}]
            body = event(kind, {"id": sent.sid, "direction": "outbound", "to": to})
            response = await post(gw, body, "/sms/telnyx/status/")
            assert response.status_code == 204
        assert store.messages[sent.sid].status == "delivered"
        incomplete = await post(gw, event("message.finalized", {"id": sent.sid}))
        assert incomplete.status_code == 400
    assert store.messages[sent.sid].status == "delivered"


async def test_stop_opts_out_start_opts_back_in_help_answers_over_the_api() -> None:
    outcomes: list[str] = []
    app = notifier_app(outcomes, "+447700900123")
    async with telnyx(app, HELP_TEXT="Call 0800 000 000.") as (gw, stub):
        await post(gw, event("message.received", inbound("+447700900123", "STOP")))
        await post(gw, event("message.received", inbound("+12125550123", "notify")))
        await post(gw, event("message.received", inbound("+12125550123", "help")))
        await stub.wait_for(1)
        await post(gw, event("message.received", inbound("+447700900123", "start")))
        await post(gw, event("message.received", inbound("+12125550123", "notify")))
        await stub.wait_for(2)
    assert outcomes == ["opted out", "sent"]
    assert [(r["to"], r["text"]) for r in stub.requests] == [
        ("+12125550123", "Call 0800 000 000."),
        ("+447700900123", "alert"),
    ]


async def test_the_sender_retries_5xx_and_maps_refusals() -> None:
    store = MemorySmsStore()
    async with rest_stub("POST /messages", telnyx_api) as stub:
        options = {"API_KEY": "k", "FROM": OURS, "API_BASE_URL": stub.url}
        values = TELNYX_OPTIONS.parse({**options, "SEND_RETRY": {"INITIAL_BACKOFF": 0.01}})
        sender = TelnyxSender(values, store)
        try:
            stub.fail_next = 2
            sent = await sender.send("+447700900123", "hello", media_urls=["https://x.test/a"])
            with pytest.raises(SmsSendError, match="Telnyx refused"):
                await sender.send("+447700900000", "x")
        finally:
            await sender.close()
    assert len(stub.requests) == 4
    assert stub.requests[2]["media_urls"] == ["https://x.test/a"]
    assert store.messages[sent.sid].status == "queued"


def test_options_are_checked() -> None:
    assert TelnyxSmsAdapter.check_options({"PUBLIC_KEY": PUBLIC_KEY, "API_KEY": "k"}) == []
    problems = TelnyxSmsAdapter.check_options({"DEADLINE": 0, "KEY": "x"})
    assert len(problems) == 2
    assert 'OPTIONS["DEADLINE"] must be seconds between 0 and 10' in "\n".join(problems)


async def test_the_communicator_builds_a_telnyx_scope() -> None:
    seen = Seen()
    communicator = SmsCommunicator(routed_app(seen), "+447700900123", OURS, "hi", provider="telnyx")
    assert (await communicator.receive_result()).replies == ["uk: hi"]
    assert seen.calls[0][1]["provider"] == "telnyx"
