"""Vonage SMS webhooks signed with the vonage SDK, against a running gateway and a stub of
Vonage's SMS API on 127.0.0.1."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import jwt
import pytest
from django.test import override_settings
from vonage import Auth

from gateway.consumers import AsyncSmsConsumer
from gateway.exceptions import SmsSendError
from gateway.sms import MemorySmsStore, asend_sms
from gateway.testing import SmsCommunicator
from protocol_adapters.vonage_sms import VONAGE_OPTIONS, VonageSender, VonageSmsAdapter
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

BACKEND = "protocol_adapters.vonage_sms.VonageSmsAdapter"
API_KEY = "abcd1234"
SECRET = "signature-secret-for-the-vonage-tests"
OURS = "447700900001"  # our Vonage number, as Vonage writes it


def sign(fields: Mapping[str, Any], secret: str = SECRET, method: str = "sha256") -> dict[str, Any]:
    """The fields with timestamp, nonce and sig, signed by the vonage SDK as Vonage signs."""
    signed = {**fields, "timestamp": str(int(time.time())), "nonce": uuid.uuid4().hex}
    auth = Auth(api_key=API_KEY, signature_secret=secret, signature_method=method)
    signed["sig"] = auth.sign_params(dict(signed))
    return signed


def inbound(msisdn: str, text: str = "hi", **extra: str) -> dict[str, str]:
    """An inbound-message webhook's fields with a fresh messageId."""
    return {
        "msisdn": msisdn,
        "to": OURS,
        "messageId": uuid.uuid4().hex[:16].upper(),
        "text": text,
        "type": "text",
        "keyword": text.split()[0].upper() if text.split() else "",
        "api-key": API_KEY,
        "message-timestamp": "2026-12-03 06:00:00",
        **extra,
    }


async def post(gw: ProviderGateway, fields: Mapping[str, Any], path: str = "/sms/vonage/") -> Any:
    return await gw.client.post(gw.url + path, data=dict(fields))


async def vonage_api(record: dict[str, Any]) -> tuple[int, Any]:
    """Vonage's answer to POST /sms/json: one message, status "0", or "15" for a bad number."""
    if str(record["to"]).endswith("000"):
        message = {"status": "15", "error-text": "Illegal Sender Address - rejected"}
        return 200, {"message-count": "1", "messages": [message]}
    message = {"to": record["to"], "message-id": uuid.uuid4().hex, "status": "0"}
    return 200, {"message-count": "1", "messages": [message]}


@asynccontextmanager
async def vonage(app: Any, **options: Any) -> AsyncIterator[tuple[ProviderGateway, RestStub]]:
    async with rest_stub("POST /sms/json", vonage_api) as stub:
        settings = {
            "API_KEY": API_KEY,
            "API_SECRET": "api-secret",
            "SIGNATURE_SECRET": SECRET,
            "API_BASE_URL": stub.url,
            "SEND_RETRY": {"ATTEMPTS": 3, "INITIAL_BACKOFF": 0.01, "MAX_BACKOFF": 0.05},
            **options,
        }
        async with running_provider(app, BACKEND, settings) as gw:
            yield gw, stub


async def test_signed_texts_reach_the_routed_consumer_and_replies_go_over_the_sms_api() -> None:
    seen = Seen()
    async with vonage(routed_app(seen)) as (gw, stub):
        form = await post(gw, sign(inbound("447700900123", "from the UK")))
        assert form.status_code == 204, form.text
        query = sign(inbound("12125550123", "from the US"))
        get = await gw.client.get(gw.url + "/sms/vonage/", params=query)
        assert get.status_code == 204, get.text
        as_json = sign(inbound("33612345678", "de France"))
        posted = await gw.client.post(gw.url + "/sms/vonage/", json=as_json)
        assert posted.status_code == 204, posted.text
        await stub.wait_for(3)
    assert seen.names() == ["uk", "us", "intl"]
    scope = seen.calls[0][1]
    assert (scope["provider"], scope["adapter"]) == ("vonage", "sms")
    assert (scope["from"], scope["to"], scope["country"]) == (
        "+447700900123",
        "+447700900001",
        "GB",
    )
    assert scope["extra"]["keyword"] == "FROM"
    assert "sig" not in scope["extra"]
    replies = {(r["to"], r["from"], r["text"]) for r in stub.requests}
    assert replies == {
        ("447700900123", OURS, "uk: from the UK"),
        ("12125550123", OURS, "us: from the US"),
        ("33612345678", OURS, "intl: de France"),
    }
    assert all(r["api_key"] == API_KEY and r["api_secret"] == "api-secret" for r in stub.requests)


async def test_refusals_never_reach_the_application(caplog: pytest.LogCaptureFixture) -> None:
    seen = Seen()
    async with vonage(routed_app(seen)) as (gw, stub):
        fields = sign(inbound("447700900123"))
        forged = await post(gw, {**fields, "text": "changed"})
        assert forged.status_code == 403
        unsigned = await post(gw, {k: v for k, v in fields.items() if k != "sig"})
        assert unsigned.status_code == 403
        other_secret = await post(gw, sign(inbound("447700900123"), secret="another"))
        assert other_secret.status_code == 403
        put = await gw.client.put(gw.url + "/sms/vonage/", data=fields)
        assert put.status_code == 405
        assert put.headers["allow"] == "GET, POST"
        no_msisdn = await post(gw, sign({k: v for k, v in inbound("x").items() if k != "msisdn"}))
        assert no_msisdn.status_code == 400
        assert "msisdn" in no_msisdn.text
        not_json = await gw.client.post(
            gw.url + "/sms/vonage/", content=b"{", headers={"content-type": "application/json"}
        )
        assert not_json.status_code == 400
        first = await post(gw, fields)
        replayed = await post(gw, fields)
        assert (first.status_code, replayed.status_code) == (204, 204)
        await stub.wait_for(1)
    assert seen.names() == ["uk"]
    assert len(stub.requests) == 1
    assert "answered 403: Forbidden: invalid sig" in caplog.text


async def test_without_the_signature_secret_every_webhook_is_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen = Seen()
    with caplog.at_level(logging.WARNING, logger="gateway.sms"):
        async with vonage(routed_app(seen), SIGNATURE_SECRET=None) as (gw, _):
            refused = await post(gw, sign(inbound("447700900123")))
            assert refused.status_code == 403
            assert "SIGNATURE_SECRET" in refused.text
    assert seen.names() == []
    assert (
        'OPTIONS["SIGNATURE_SECRET"] is not set: /sms/vonage/ refuses every webhook' in caplog.text
    )
    [risk] = VonageSmsAdapter.deploy_risks({"API_KEY": API_KEY})
    assert risk.id == "gateway.W104"
    assert "SIGNATURE_SECRET" in risk.message


async def test_an_application_error_is_answered_204_and_dead_lettered() -> None:
    seen = Seen()
    async with vonage(routed_app(seen, fail=True), RETRY={"ATTEMPTS": 2}) as (gw, stub):
        fields = inbound("447700900123")
        response = await post(gw, sign(fields))
        assert response.status_code == 204
        retried_by_vonage = await post(gw, sign(fields))
        assert retried_by_vonage.status_code == 204
    assert seen.names() == ["uk", "uk"]  # two attempts in the gateway, none for the retry
    [letter] = gw.dead_letters
    assert letter.scope["provider"] == "vonage"
    assert "consumer broke" in letter.error
    stored = gw.adapter.store.messages[fields["messageId"]]
    assert stored.status == "failed"
    assert stub.requests == []  # no reply for a failed message


async def test_past_the_deadline_the_answer_goes_and_the_reply_follows() -> None:
    release = asyncio.Event()

    class Slow(AsyncSmsConsumer):
        async def receive(self, body: str) -> None:
            await release.wait()
            await self.reply("late answer")

    app = ProtocolTypeRouter({"sms": Slow.as_asgi()})
    async with vonage(app, DEADLINE=0.2) as (gw, stub):
        response = await post(gw, sign(inbound("447700900123")))
        assert response.status_code == 204
        assert stub.requests == []
        release.set()
        await stub.wait_for(1)
    assert (stub.requests[0]["to"], stub.requests[0]["text"]) == ("447700900123", "late answer")


async def test_a_multipart_message_is_delivered_once_whole() -> None:
    seen = Seen()
    texts = ["This message was too long ", "for one SMS, so it came ", "in three parts."]
    ref = "0A1B"
    parts = [
        inbound(
            "447700900123",
            text,
            concat="true",
            **{"concat-ref": ref, "concat-total": "3", "concat-part": str(number)},
        )
        for number, text in enumerate(texts, start=1)
    ]
    async with vonage(routed_app(seen)) as (gw, stub):
        for part in (parts[2], parts[0], parts[0], parts[1]):  # out of order, one retried
            response = await post(gw, sign(part))
            assert response.status_code == 204
        await stub.wait_for(1)
    assert seen.names() == ["uk"]
    _, scope, body = seen.calls[0]
    assert body == "".join(texts)
    assert scope["message_id"] == parts[0]["messageId"]
    assert scope["extra"]["message-ids"].split(",") == [p["messageId"] for p in parts]
    assert [r["text"] for r in stub.requests] == ["uk: " + "".join(texts)]


async def test_parts_missing_past_the_timeout_deliver_what_arrived() -> None:
    seen = Seen()
    concat = {"concat": "true", "concat-ref": "77", "concat-total": "2"}
    part = inbound("447700900123", "half of it", **concat, **{"concat-part": "1"})
    async with vonage(routed_app(seen), CONCAT_TIMEOUT=0.2) as (gw, stub):
        assert (await post(gw, sign(part))).status_code == 204
        await seen.wait_for(1)
        await stub.wait_for(1)
    _, scope, body = seen.calls[0]
    assert body == "half of it"
    assert scope["extra"]["concat-missing"] == "1"
    assert stub.requests[0]["text"] == "uk: half of it"


async def test_parts_still_missing_at_shutdown_are_handled_before_it() -> None:
    seen = Seen()
    concat = {"concat": "true", "concat-ref": "78", "concat-total": "3"}
    part = inbound("447700900123", "a third", **concat, **{"concat-part": "2"})
    async with vonage(routed_app(seen)) as (gw, _):
        assert (await post(gw, sign(part))).status_code == 204
        assert seen.calls == []
    _, scope, body = seen.calls[0]
    assert (body, scope["extra"]["concat-missing"]) == ("a third", "2")


async def test_delivery_receipts_only_move_forward() -> None:
    class Sender(AsyncSmsConsumer):
        async def receive(self, body: str) -> None:
            await self.send("+447700900123", "your code is 1234")

    app = ProtocolTypeRouter({"sms": Sender.as_asgi()})
    async with vonage(app, FROM=OURS) as (gw, stub):
        await post(gw, sign(inbound("12125550123")))
        await stub.wait_for(1)
        store = gw.adapter.store
        [sent] = [m for m in store.messages.values() if m.direction == "outbound"]
        assert sent.status == "accepted"
        for status in ("buffered", "delivered", "accepted", "failed", "unknown"):
            receipt = {"msisdn": "447700900123", "to": OURS, "messageId": sent.sid}
            receipt |= {"status": status, "err-code": "0", "network-code": "23410"}
            response = await post(gw, sign(receipt), "/sms/vonage/status/")
            assert response.status_code == 204
        assert store.messages[sent.sid].status == "delivered"
        forged = {"messageId": sent.sid, "status": "failed", "sig": "0" * 64}
        assert (await post(gw, forged, "/sms/vonage/status/")).status_code == 403
        incomplete = await post(gw, sign({"messageId": sent.sid}), "/sms/vonage/status/")
        assert incomplete.status_code == 400
    assert store.messages[sent.sid].status == "delivered"


async def test_stop_opts_out_start_opts_back_in_help_answers_over_rest() -> None:
    outcomes: list[str] = []
    app = notifier_app(outcomes, "+447700900123")
    async with vonage(app, HELP_TEXT="Call 0800 000 000.", FROM=OURS) as (gw, stub):
        await post(gw, sign(inbound("447700900123", " stop ")))
        await post(gw, sign(inbound("12125550123", "notify")))
        await post(gw, sign(inbound("12125550123", "HELP")))
        await stub.wait_for(1)
        await post(gw, sign(inbound("447700900123", "START")))
        await post(gw, sign(inbound("12125550123", "notify")))
        await stub.wait_for(2)
    assert outcomes == ["opted out", "sent"]
    assert [(r["to"], r["text"]) for r in stub.requests] == [
        ("12125550123", "Call 0800 000 000."),
        ("447700900123", "alert"),
    ]


async def test_the_sender_retries_5xx_and_maps_refusals() -> None:
    store = MemorySmsStore()
    async with rest_stub("POST /sms/json", vonage_api) as stub:
        values = VONAGE_OPTIONS.parse(
            {
                "API_KEY": API_KEY,
                "API_SECRET": "s",
                "FROM": "Acme",
                "API_BASE_URL": stub.url,
                "PUBLIC_URL": "https://sms.example.com",
                "SEND_RETRY": {"ATTEMPTS": 3, "INITIAL_BACKOFF": 0.01},
            }
        )
        sender = VonageSender(values, store)
        try:
            stub.fail_next = 2
            sent = await sender.send("+447700900123", "héllo")
            with pytest.raises(SmsSendError, match="Illegal Sender Address"):
                await sender.send("+447700900000", "x")
        finally:
            await sender.close()
    assert len(stub.requests) == 4
    request = stub.requests[2]
    assert (request["from"], request["to"], request["type"]) == ("Acme", "447700900123", "unicode")
    assert request["callback"] == "https://sms.example.com/sms/vonage/status/"
    assert store.messages[sent.sid].direction == "outbound"


async def test_asend_sms_defaults_to_the_only_sms_adapter() -> None:
    async with rest_stub("POST /sms/json", vonage_api) as stub:
        options = {"API_KEY": API_KEY, "API_SECRET": "s", "FROM": OURS, "STORE": "memory"}
        options["API_BASE_URL"] = stub.url
        gateway = {"ADAPTERS": {"texts": {"BACKEND": BACKEND, "OPTIONS": options}}}
        with override_settings(GATEWAY=gateway):
            sent = await asend_sms("+447700900123", "from anywhere")
    assert sent.to == "+447700900123"
    assert stub.requests[0]["text"] == "from anywhere"


def test_options_are_checked() -> None:
    good = {"API_KEY": API_KEY, "SIGNATURE_SECRET": SECRET, "SIGNATURE_METHOD": "sha512"}
    assert VonageSmsAdapter.check_options(good) == []
    problems = VonageSmsAdapter.check_options(
        {"SIGNATURE_METHOD": "md5hash", "DEADLINE": 60, "WEBHOOK_PATH": "sms", "SECRET": "x"}
    )
    text = "\n".join(problems)
    assert 'OPTIONS["SECRET"] is not a known key' in text
    assert 'OPTIONS["SIGNATURE_METHOD"] must be one of' in text
    assert 'OPTIONS["DEADLINE"] must be seconds between 0 and 30' in text
    assert 'OPTIONS["WEBHOOK_PATH"] must be a path' in text
    assert len(problems) == 4


async def test_the_communicator_builds_a_vonage_scope() -> None:
    seen = Seen()
    communicator = SmsCommunicator(
        routed_app(seen), "+447700900123", "+447700900001", "hi", provider="vonage"
    )
    result = await communicator.receive_result()
    assert result.replies == ["uk: hi"]
    assert (seen.calls[0][1]["provider"], seen.calls[0][1]["adapter"]) == ("vonage", "vonage")


async def test_a_reply_that_cannot_be_sent_fails_the_message_unless_logged_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Replier(AsyncSmsConsumer):
        async def receive(self, body: str) -> None:
            await self.reply(f"re: {body}", on_failure="log" if body == "log it" else None)

    app = ProtocolTypeRouter({"sms": Replier.as_asgi()})
    async with vonage(app, API_SECRET=None) as (gw, stub):
        failing, logged = inbound("447700900123", "fail it"), inbound("447700900124", "log it")
        assert (await post(gw, sign(failing))).status_code == 204
        assert (await post(gw, sign(logged))).status_code == 204
        for _ in range(100):
            if gw.dead_letters and "Reply not sent" in caplog.text:
                break
            await asyncio.sleep(0.02)
        store = gw.adapter.store
        assert store.messages[failing["messageId"]].status == "failed"
        assert store.messages[logged["messageId"]].status == "received"
    [letter] = gw.dead_letters
    assert "credentials are not set" in letter.error
    assert 'Unsent reply: {"body": "re: fail it"' in letter.error
    assert stub.requests == []
    assert "re: log it" in caplog.text


async def test_nothing_is_replied_to_a_number_that_opted_out() -> None:
    class Replier(AsyncSmsConsumer):
        async def receive(self, body: str) -> None:
            await self.reply("still here")

    app = ProtocolTypeRouter({"sms": Replier.as_asgi()})
    async with vonage(app) as (gw, stub):
        await post(gw, sign(inbound("447700900123", "STOP")))
        assert (await post(gw, sign(inbound("447700900123", "hello?")))).status_code == 204
        await post(gw, sign(inbound("12125550123", "hello?")))
        await stub.wait_for(1)
    assert gw.dead_letters == []
    assert [r["to"] for r in stub.requests] == ["12125550123"]


@pytest.mark.django_db(transaction=True)
async def test_a_dead_letter_replays_and_its_reply_goes_out_through_vonage() -> None:
    from django_app.deadletters import areplay, store_dead_letter
    from django_app.models.deadletters import DeadLetter

    broken = {"now": True}
    seen: list[str] = []

    class Flaky(AsyncSmsConsumer):
        async def receive(self, body: str) -> None:
            if broken["now"]:
                raise RuntimeError("device registry down")
            seen.append(body)
            await self.reply(f"got {body}")

    app = ProtocolTypeRouter({"sms": Flaky.as_asgi()})
    async with vonage(app) as (gw, stub):
        assert (await post(gw, sign(inbound("447700900123", "STATUS")))).status_code == 204
        [letter] = gw.dead_letters
        options = {"API_KEY": API_KEY, "API_SECRET": "s", "API_BASE_URL": stub.url}
        gateway = {"ADAPTERS": {"sms": {"BACKEND": BACKEND, "OPTIONS": options}}}
        with override_settings(GATEWAY=gateway):
            await store_dead_letter(letter)
            dead = await DeadLetter.objects.aget(protocol="sms")
            broken["now"] = False
            await areplay(dead, app=app)
    assert seen == ["STATUS"]
    [request] = stub.requests
    assert (request["to"], request["from"], request["text"]) == ("447700900123", OURS, "got STATUS")


def messages_api(from_: str, text: str = "hi") -> bytes:
    """A Messages API inbound-SMS webhook body with a fresh message_uuid."""
    body = {
        "channel": "sms",
        "message_uuid": str(uuid.uuid4()),
        "to": OURS,
        "from": from_,
        "timestamp": "2026-12-03T06:00:00Z",
        "text": text,
        "message_type": "text",
        "sms": {"num_messages": "1", "keyword": text.split()[0].upper()},
    }
    return json.dumps(body).encode()


def jwt_headers(body: bytes, secret: str = SECRET, **claims: Any) -> dict[str, str]:
    """The Authorization header Vonage signs Messages API webhooks with: HS256, payload_hash."""
    now = int(time.time())
    token = jwt.encode(
        {
            "iat": now,
            "exp": now + 300,
            "jti": str(uuid.uuid4()),
            "iss": "Vonage",
            "api_key": API_KEY,
            "application_id": str(uuid.uuid4()),
            "payload_hash": hashlib.sha256(body).hexdigest(),
            **claims,
        },
        secret,
        algorithm="HS256",
    )
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


async def test_messages_api_webhooks_are_checked_by_their_jwt() -> None:
    seen = Seen()
    async with vonage(routed_app(seen)) as (gw, stub):
        url = gw.url + "/sms/vonage/"
        body = messages_api("447700900123", "hello there")
        ok = await gw.client.post(url, content=body, headers=jwt_headers(body))
        assert ok.status_code == 204, ok.text
        tampered = body.replace(b"hello there", b"hello THERE")
        refused = [
            await gw.client.post(url, content=tampered, headers=jwt_headers(body)),
            await gw.client.post(
                url,
                content=body,
                headers=jwt_headers(body, "another-secret-of-thirty-two-bytes-or-more"),
            ),
            await gw.client.post(url, content=body, headers=jwt_headers(body, exp=1)),
            await gw.client.post(url, content=body, headers={"Authorization": "Bearer x.y.z"}),
        ]
        assert [response.status_code for response in refused] == [403, 403, 403, 403]
        assert "payload_hash" in refused[0].text
        replay = await gw.client.post(url, content=body, headers=jwt_headers(body))
        assert replay.status_code == 204
        status = json.dumps({"message_uuid": "unknown", "status": "delivered", "channel": "sms"})
        receipt = await gw.client.post(url, content=status, headers=jwt_headers(status.encode()))
        assert receipt.status_code == 204
        await stub.wait_for(1)
    assert seen.names() == ["uk"]
    _, scope, text = seen.calls[0]
    assert (scope["from"], text) == ("+447700900123", "hello there")
    assert scope["extra"]["sms.num_messages"] == "1"
    assert [(r["to"], r["text"]) for r in stub.requests] == [("447700900123", "uk: hello there")]
