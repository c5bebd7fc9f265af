"""Plivo SMS webhooks signed with the plivo SDK's V3 signature, against a running gateway and a
stub of Plivo's Message API on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlencode

import pytest
from plivo.utils.signature_v3 import construct_get_url, construct_post_url, get_signature_v3

from gateway.consumers import AsyncSmsConsumer
from gateway.exceptions import SmsSendError
from gateway.sms import MemorySmsStore
from gateway.testing import SmsCommunicator
from protocol_adapters.plivo_sms import PLIVO_OPTIONS, PlivoSender, PlivoSmsAdapter
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

BACKEND = "protocol_adapters.plivo_sms.PlivoSmsAdapter"
AUTH_ID = "MA" + "A" * 18
TOKEN = "plivo-auth-token"
OURS = "14155550100"
API_ROUTE = "POST /v1/Account/{auth_id}/Message/"


def signed_headers(
    url: str, fields: Mapping[str, str], method: str = "POST", token: str = TOKEN
) -> dict[str, str]:
    """X-Plivo-Signature-V3 and its nonce, computed with the plivo SDK as Plivo computes them."""
    nonce = uuid.uuid4().hex
    if method == "GET":
        base = construct_get_url(url, {}).decode()
    else:
        base = construct_post_url(url, dict(fields)).decode()
    signature = get_signature_v3(token.encode(), base, nonce.encode()).decode()
    return {"X-Plivo-Signature-V3": signature, "X-Plivo-Signature-V3-Nonce": nonce}


def inbound(from_: str, text: str = "hi", **extra: str) -> dict[str, str]:
    """A Message URL request's fields with a fresh MessageUUID."""
    return {
        "From": from_,
        "To": OURS,
        "Text": text,
        "Type": "sms",
        "MessageUUID": str(uuid.uuid4()),
        "Units": "1",
        "TotalRate": "0",
        "MessageIntent": "",
        **extra,
    }


async def post(
    gw: ProviderGateway, fields: Mapping[str, str], path: str = "/sms/plivo/", **sign: Any
) -> Any:
    url = gw.url + path
    headers = signed_headers(url, fields, **sign)
    return await gw.client.post(url, data=dict(fields), headers=headers)


def messages(text: str) -> list[tuple[str, str, str]]:
    """The (src, dst, text) of each <Message> of a Plivo XML <Response>; fails on anything else."""
    root = ET.fromstring(text)
    assert root.tag == "Response", text
    assert all(child.tag == "Message" for child in root), text
    return [(child.get("src", ""), child.get("dst", ""), child.text or "") for child in root]


async def plivo_api(record: dict[str, Any]) -> tuple[int, Any]:
    """Plivo's answer to a new message: 202 with its uuid, or 400 for a bad number."""
    if str(record["dst"]).endswith("000"):
        return 400, {"api_id": str(uuid.uuid4()), "error": "dst parameter is invalid"}
    body = {"api_id": str(uuid.uuid4()), "message": "message(s) queued"}
    return 202, {**body, "message_uuid": [str(uuid.uuid4())]}


@asynccontextmanager
async def plivo(app: Any, **options: Any) -> AsyncIterator[tuple[ProviderGateway, RestStub]]:
    async with rest_stub(API_ROUTE, plivo_api) as stub:
        settings = {
            "AUTH_ID": AUTH_ID,
            "AUTH_TOKEN": TOKEN,
            "FROM": OURS,
            "API_BASE_URL": stub.url,
            "SEND_RETRY": {"ATTEMPTS": 3, "INITIAL_BACKOFF": 0.01, "MAX_BACKOFF": 0.05},
            **options,
        }
        async with running_provider(app, BACKEND, settings) as gw:
            yield gw, stub


async def test_signed_texts_reach_the_routed_consumer_and_replies_are_plivo_xml() -> None:
    seen = Seen()
    async with plivo(routed_app(seen)) as (gw, stub):
        response = await post(gw, inbound("447700900123", "from the UK"))
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/xml")
        assert messages(response.text) == [(OURS, "447700900123", "uk: from the UK")]
        query = inbound("12125550123", "from the US")
        url = f"{gw.url}/sms/plivo/?{urlencode(query)}"
        get = await gw.client.get(url, headers=signed_headers(url, {}, method="GET"))
        assert get.status_code == 200, get.text
        assert messages(get.text) == [(OURS, "12125550123", "us: from the US")]
    assert seen.names() == ["uk", "us"]
    scope = seen.calls[0][1]
    assert (scope["provider"], scope["from"], scope["to"]) == (
        "plivo",
        "+447700900123",
        "+14155550100",
    )
    assert scope["extra"]["Units"] == "1"
    assert stub.requests == []  # replies went in the answer


async def test_refusals_never_reach_the_application() -> None:
    seen = Seen()
    async with plivo(routed_app(seen)) as (gw, _):
        fields = inbound("447700900123")
        url = gw.url + "/sms/plivo/"
        forged = await gw.client.post(
            url, data={**fields, "Text": "changed"}, headers=signed_headers(url, fields)
        )
        assert forged.status_code == 403
        unsigned = await gw.client.post(url, data=fields)
        assert unsigned.status_code == 403
        other_token = await post(gw, fields, token="another-token")
        assert other_token.status_code == 403
        delete = await gw.client.delete(url)
        assert delete.status_code == 405
        assert delete.headers["allow"] == "GET, POST"
        no_uuid = await post(gw, {k: v for k, v in fields.items() if k != "MessageUUID"})
        assert no_uuid.status_code == 400
        assert "MessageUUID" in no_uuid.text
        first = await post(gw, fields)
        replayed = await post(gw, fields)
        assert messages(first.text) == [(OURS, "447700900123", "uk: hi")]
        assert (replayed.status_code, messages(replayed.text)) == (200, [])
    assert seen.names() == ["uk"]


async def test_signature_behind_a_tls_terminating_proxy() -> None:
    seen = Seen()
    public = "https://sms.example.com/sms/plivo/"
    options = {"PUBLIC_URL": "https://sms.example.com"}
    async with plivo(routed_app(seen), **options) as (gw, _):
        fields = inbound("447700900123")
        headers = signed_headers(public, fields)
        ok = await gw.client.post(gw.url + "/sms/plivo/", data=fields, headers=headers)
        assert ok.status_code == 200
        fields = inbound("447700900123")
        as_local = await post(gw, fields)  # signed for the local URL, not the public one
        assert as_local.status_code == 403
    assert seen.names() == ["uk"]


async def test_without_the_auth_token_every_webhook_is_refused() -> None:
    seen = Seen()
    async with plivo(routed_app(seen), AUTH_TOKEN=None) as (gw, _):
        refused = await post(gw, inbound("447700900123"), token="")
        assert refused.status_code == 403
        assert "AUTH_TOKEN" in refused.text
    assert seen.names() == []
    [risk] = PlivoSmsAdapter.deploy_risks({"AUTH_ID": AUTH_ID})
    assert (risk.id, "AUTH_TOKEN" in risk.message) == ("gateway.W104", True)


async def test_an_application_error_answers_empty_xml_and_dead_letters() -> None:
    seen = Seen()
    async with plivo(routed_app(seen, fail=True)) as (gw, stub):
        fields = inbound("447700900123")
        response = await post(gw, fields)
        assert (response.status_code, messages(response.text)) == (200, [])
    [letter] = gw.dead_letters
    assert (letter.scope["provider"], "consumer broke" in letter.error) == ("plivo", True)
    assert gw.adapter.store.messages[fields["MessageUUID"]].status == "failed"
    assert stub.requests == []


async def test_a_long_message_plivo_joined_is_delivered_once_whole() -> None:
    seen = Seen()
    text = "Long messages arrive joined by Plivo. " * 10
    async with plivo(routed_app(seen)) as (gw, _):
        fields = inbound("447700900123", text, Units="3")
        first = await post(gw, fields)
        retried = await post(gw, fields)
    assert messages(first.text) == [(OURS, "447700900123", f"uk: {text}")]
    assert messages(retried.text) == []
    assert [body for _, _, body in seen.calls] == [text]


async def test_past_the_deadline_replies_go_over_the_message_api() -> None:
    release = asyncio.Event()

    class Slow(AsyncSmsConsumer):
        async def receive(self, body: str) -> None:
            await release.wait()
            await self.reply("late answer")

    app = ProtocolTypeRouter({"sms": Slow.as_asgi()})
    async with plivo(app, DEADLINE=0.2) as (gw, stub):
        response = await post(gw, inbound("447700900123"))
        assert messages(response.text) == []
        release.set()
        await stub.wait_for(1)
    request = stub.requests[0]
    assert (request["src"], request["dst"], request["text"]) == (
        OURS,
        "447700900123",
        "late answer",
    )
    assert request["_match"]["auth_id"] == AUTH_ID
    expected = base64.b64encode(f"{AUTH_ID}:{TOKEN}".encode()).decode()
    assert request["_headers"]["Authorization"] == f"Basic {expected}"


async def test_status_callbacks_only_move_forward() -> None:
    class Sender(AsyncSmsConsumer):
        async def receive(self, body: str) -> None:
            await self.send("+447700900123", "your code is 1234")

    app = ProtocolTypeRouter({"sms": Sender.as_asgi()})
    async with plivo(app, PUBLIC_URL="https://sms.example.com") as (gw, stub):
        fields = inbound("12125550123")
        headers = signed_headers("https://sms.example.com/sms/plivo/", fields)
        await gw.client.post(gw.url + "/sms/plivo/", data=fields, headers=headers)
        await stub.wait_for(1)
        assert stub.requests[0]["url"] == "https://sms.example.com/sms/plivo/status/"
        store = gw.adapter.store
        [sent] = [m for m in store.messages.values() if m.direction == "outbound"]
        public = "https://sms.example.com/sms/plivo/status/"
        for status in ("sent", "delivered", "queued", "failed"):
            fields = {"MessageUUID": sent.sid, "Status": status, "To": "447700900123"}
            response = await gw.client.post(
                gw.url + "/sms/plivo/status/", data=fields, headers=signed_headers(public, fields)
            )
            assert response.status_code == 200
        assert store.messages[sent.sid].status == "delivered"
        fields = {"MessageUUID": sent.sid, "Status": "failed"}
        unsigned = await gw.client.post(gw.url + "/sms/plivo/status/", data=fields)
        assert unsigned.status_code == 403
        fields = {"MessageUUID": sent.sid}
        incomplete = await gw.client.post(
            gw.url + "/sms/plivo/status/", data=fields, headers=signed_headers(public, fields)
        )
        assert incomplete.status_code == 400
    assert store.messages[sent.sid].status == "delivered"


async def test_stop_opts_out_start_opts_back_in_help_answers_in_xml() -> None:
    outcomes: list[str] = []
    app = notifier_app(outcomes, "+447700900123")
    async with plivo(app, HELP_TEXT="Call 0800 000 000.") as (gw, stub):
        stop = await post(gw, inbound("447700900123", " stop "))
        assert messages(stop.text) == []
        await post(gw, inbound("12125550123", "notify"))
        help_reply = await post(gw, inbound("447700900123", "HELP"))
        assert messages(help_reply.text) == [(OURS, "447700900123", "Call 0800 000 000.")]
        await post(gw, inbound("447700900123", "START"))
        await post(gw, inbound("12125550123", "notify"))
        await stub.wait_for(1)
    assert outcomes == ["opted out", "sent"]
    assert [(r["dst"], r["text"]) for r in stub.requests] == [("447700900123", "alert")]


async def test_the_sender_retries_5xx_and_maps_refusals() -> None:
    store = MemorySmsStore()
    async with rest_stub(API_ROUTE, plivo_api) as stub:
        options = {"AUTH_ID": AUTH_ID, "AUTH_TOKEN": TOKEN, "FROM": OURS, "API_BASE_URL": stub.url}
        values = PLIVO_OPTIONS.parse({**options, "SEND_RETRY": {"INITIAL_BACKOFF": 0.01}})
        sender = PlivoSender(values, store)
        try:
            stub.fail_next = 2
            sent = await sender.send("+447700900123", "pic", media_urls=["https://x.test/a.png"])
            with pytest.raises(SmsSendError, match="dst parameter is invalid"):
                await sender.send("+447700900000", "x")
        finally:
            await sender.close()
    assert len(stub.requests) == 4
    assert stub.requests[2]["type"] == "mms"
    assert stub.requests[2]["media_urls"] == ["https://x.test/a.png"]
    assert store.messages[sent.sid].status == "queued"


def test_options_are_checked() -> None:
    assert PlivoSmsAdapter.check_options({"AUTH_ID": AUTH_ID, "AUTH_TOKEN": TOKEN}) == []
    problems = PlivoSmsAdapter.check_options({"DEADLINE": 20, "TOKEN": "x", "FROM": 1})
    assert len(problems) == 3
    assert 'OPTIONS["DEADLINE"] must be seconds between 0 and 15' in "\n".join(problems)


async def test_the_communicator_builds_a_plivo_scope() -> None:
    seen = Seen()
    communicator = SmsCommunicator(
        routed_app(seen), "+447700900123", "+14155550100", "hi", provider="plivo"
    )
    assert (await communicator.receive_result()).replies == ["uk: hi"]
    assert seen.calls[0][1]["provider"] == "plivo"
