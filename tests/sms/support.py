"""A running gateway with the Twilio adapter, signed webhook requests, and a Twilio API stub."""

from __future__ import annotations

import asyncio
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from aiohttp import web
from twilio.request_validator import RequestValidator

from gateway.conf import GatewaySettings
from gateway.pipeline import DeadLetter
from gateway.server import Gateway
from gateway.types import ASGIApp

TOKEN = "test-auth-token"
ACCOUNT_SID = "AC" + "0" * 32
BACKEND = "protocol_adapters.twilio_sms.TwilioSmsAdapter"
WEBHOOK = "/sms/twilio/"
STATUS = "/sms/twilio/status/"
START_TIMEOUT = 30.0  # generous: only there to avoid hanging


@dataclass
class RunningGateway:
    url: str
    client: httpx.AsyncClient
    dead_letters: list[DeadLetter]
    gateway: Gateway

    @property
    def adapter(self) -> Any:
        return self.gateway._adapters[0].adapter

    async def post(
        self,
        form: Mapping[str, str],
        *,
        path: str = WEBHOOK,
        signed_url: str | None = None,
        token: str = TOKEN,
        headers: Mapping[str, str] | None = None,
        signature: str | None = None,
    ) -> httpx.Response:
        """POST a form, signed with twilio's RequestValidator for `signed_url` (default: ours)."""
        url = signed_url or self.url + path
        sig = signature if signature is not None else sign(url, form, token)
        all_headers = {"X-Twilio-Signature": sig, **(headers or {})}
        if signature == "":
            del all_headers["X-Twilio-Signature"]
        return await self.client.post(self.url + path, data=dict(form), headers=all_headers)


def sign(url: str, form: Mapping[str, str], token: str = TOKEN) -> str:
    signature: str = RequestValidator(token).compute_signature(url, dict(form))
    return signature


def inbound(from_: str, body: str = "hi", to: str = "+15005550006", **extra: str) -> dict[str, str]:
    """A Twilio incoming-message webhook form with a fresh MessageSid."""
    return {
        "MessageSid": "SM" + uuid.uuid4().hex,
        "AccountSid": ACCOUNT_SID,
        "From": from_,
        "To": to,
        "Body": body,
        "NumMedia": "0",
        **extra,
    }


def twiml_messages(text: str) -> list[str]:
    """The <Message> texts of a TwiML <Response>; fails on anything else."""
    root = ET.fromstring(text)
    assert root.tag == "Response", text
    assert all(child.tag == "Message" for child in root), text
    return [child.text or "" for child in root]


@asynccontextmanager
async def running_gateway(
    app: ASGIApp, options: Mapping[str, Any] | None = None
) -> AsyncIterator[RunningGateway]:
    """`Gateway(app).serve()` on 127.0.0.1, port 0, with the Twilio adapter; stopped after."""
    dead_letters: list[DeadLetter] = []

    async def dead_letter(letter: DeadLetter) -> None:
        dead_letters.append(letter)

    adapter_options = {"AUTH_TOKEN": TOKEN, "STORE": "memory", **(options or {})}
    settings = GatewaySettings(
        {
            "ADAPTERS": {"sms": {"BACKEND": BACKEND, "OPTIONS": adapter_options}},
            "DEAD_LETTER_HANDLER": dead_letter,
            "SHUTDOWN_TIMEOUT": 5,
            "LOOP": "asyncio",
        }
    )
    gateway = Gateway(app, settings=settings, host="127.0.0.1", port=0)
    ready = asyncio.Event()
    serving = asyncio.create_task(gateway.serve(ready))
    waiter = asyncio.create_task(ready.wait())
    await asyncio.wait([serving, waiter], timeout=START_TIMEOUT, return_when="FIRST_COMPLETED")
    waiter.cancel()
    assert ready.is_set(), f"the gateway did not start: {serving}"
    url = next(item.address for item in gateway.listeners if item.protocol == "http")
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            yield RunningGateway(url, client, dead_letters, gateway)
    finally:
        gateway.stop()
        assert await asyncio.wait_for(serving, START_TIMEOUT) == 0


@dataclass
class TwilioStub:
    """Twilio's Messages API on 127.0.0.1: records requests; can fail or stall some first."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    fail_next: int = 0
    fail_status: int = 500
    stall_next: int = 0
    url: str = ""
    received: asyncio.Event = field(default_factory=asyncio.Event)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", self.create)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    async def stop(self) -> None:
        self.stopping.set()  # releases stalled requests
        if self._runner is not None:
            await self._runner.cleanup()

    async def create(self, request: web.Request) -> web.Response:
        form = await request.post()
        record: dict[str, Any] = {key: form.getall(key) for key in set(form.keys())}
        record["_account"] = request.match_info["sid"]
        record["_auth"] = request.headers.get("Authorization", "")
        self.requests.append(record)
        self.received.set()
        if self.stall_next:
            self.stall_next -= 1
            await asyncio.wait_for(self.stopping.wait(), 30)
        if self.fail_next:
            self.fail_next -= 1
            body = {"code": 20500, "message": "Internal Server Error", "status": self.fail_status}
            return web.json_response(body, status=self.fail_status)
        if str(form.get("To", "")).endswith("000"):
            body = {"code": 21211, "message": "Invalid 'To' Phone Number", "status": 400}
            return web.json_response(body, status=400)
        return web.json_response(
            {
                "sid": "SM" + uuid.uuid4().hex,
                "account_sid": request.match_info["sid"],
                "status": "queued",
                "to": form.get("To"),
                "from": form.get("From"),
                "body": form.get("Body"),
                "messaging_service_sid": form.get("MessagingServiceSid"),
            },
            status=201,
        )

    def options(self, attempts: int = 3, **extra: Any) -> dict[str, Any]:
        """Adapter OPTIONS that send through this stub, with tiny backoffs."""
        return {
            "ACCOUNT_SID": ACCOUNT_SID,
            "AUTH_TOKEN": TOKEN,
            "FROM": "+15005550006",
            "API_BASE_URL": self.url,
            "SEND_RETRY": {"ATTEMPTS": attempts, "INITIAL_BACKOFF": 0.01, "MAX_BACKOFF": 0.05},
            **extra,
        }


@asynccontextmanager
async def twilio_stub() -> AsyncIterator[TwilioStub]:
    stub = TwilioStub()
    await stub.start()
    try:
        yield stub
    finally:
        await stub.stop()
