"""A running gateway with one SMS provider's adapter, a stub of that provider's REST API on
127.0.0.1, and the consumers the provider tests share."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from aiohttp import web

from gateway.conf import GatewaySettings
from gateway.consumers import AsyncSmsConsumer
from gateway.pipeline import DeadLetter
from gateway.server import Gateway
from gateway.types import ASGIApp
from routers import ProtocolTypeRouter
from routers.sms import SMSFromRouter, phone

START_TIMEOUT = 30.0  # generous: only there to avoid hanging
WAIT = 10.0


@dataclass
class ProviderGateway:
    url: str
    client: httpx.AsyncClient
    dead_letters: list[DeadLetter]
    gateway: Gateway

    @property
    def adapter(self) -> Any:
        return self.gateway._adapters[0].adapter


@asynccontextmanager
async def running_provider(
    app: ASGIApp, backend: str, options: Mapping[str, Any]
) -> AsyncIterator[ProviderGateway]:
    """`Gateway(app).serve()` on 127.0.0.1, port 0, with one SMS adapter; stopped after."""
    dead_letters: list[DeadLetter] = []

    async def dead_letter(letter: DeadLetter) -> None:
        dead_letters.append(letter)

    settings = GatewaySettings(
        {
            "ADAPTERS": {"sms": {"BACKEND": backend, "OPTIONS": {"STORE": "memory", **options}}},
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
            yield ProviderGateway(url, client, dead_letters, gateway)
    finally:
        gateway.stop()
        assert await asyncio.wait_for(serving, START_TIMEOUT) == 0


Reply = Callable[[dict[str, Any]], Awaitable[tuple[int, Any]]]


@dataclass
class RestStub:
    """A provider's REST API on 127.0.0.1: records each request, answers with `reply`."""

    route: str
    reply: Reply
    requests: list[dict[str, Any]] = field(default_factory=list)
    fail_next: int = 0
    url: str = ""
    received: asyncio.Event = field(default_factory=asyncio.Event)
    _runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        method, path = self.route.split(" ", 1)
        app.router.add_route(method, path, self.handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        if request.content_type == "application/json":
            data: dict[str, Any] = json.loads(raw)
        else:
            data = dict((await request.post()).items())
        record = {**data, "_path": request.path, "_headers": dict(request.headers)}
        record["_match"] = dict(request.match_info)
        self.requests.append(record)
        self.received.set()
        if self.fail_next:
            self.fail_next -= 1
            return web.json_response({"error": "Internal Server Error"}, status=500)
        status, body = await self.reply(record)
        return web.json_response(body, status=status)

    async def wait_for(self, count: int) -> None:
        for _ in range(int(WAIT / 0.02)):
            if len(self.requests) >= count:
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"{len(self.requests)} request(s) to the stub, expected {count}")


@asynccontextmanager
async def rest_stub(route: str, reply: Reply) -> AsyncIterator[RestStub]:
    stub = RestStub(route, reply)
    await stub.start()
    try:
        yield stub
    finally:
        if stub._runner is not None:
            await stub._runner.cleanup()


class Seen:
    """What the consumers saw: (consumer name, scope, body) per message."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any], str]] = []
        self.changed = asyncio.Event()

    def names(self) -> list[str]:
        return [name for name, _, _ in self.calls]

    async def wait_for(self, count: int) -> None:
        for _ in range(int(WAIT / 0.02)):
            if len(self.calls) >= count:
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"{len(self.calls)} message(s) seen, expected {count}")


def routed_app(seen: Seen, *, fail: bool = False) -> ASGIApp:
    """UK, US and the rest, each replying "<name>: <body>" (or failing when `fail`)."""

    def consumer(name: str) -> Any:
        class Named(AsyncSmsConsumer):
            async def receive(self, body: str) -> None:
                seen.calls.append((name, dict(self.scope), body))
                if fail:
                    raise RuntimeError("consumer broke")
                await self.reply(f"{name}: {body}")

        return Named.as_asgi()

    router = SMSFromRouter(
        [phone("+44", consumer("uk")), phone("+1", consumer("us"))], default=consumer("intl")
    )
    return ProtocolTypeRouter({"sms": router})


def notifier_app(outcomes: list[str], to: str) -> ASGIApp:
    """Sends "alert" to `to` for every message; records "sent" or "opted out"."""
    from gateway.exceptions import SmsOptedOut

    class Notifier(AsyncSmsConsumer):
        async def receive(self, body: str) -> None:
            try:
                await self.send(to, "alert")
            except SmsOptedOut:
                outcomes.append("opted out")
            else:
                outcomes.append("sent")

    return ProtocolTypeRouter({"sms": Notifier.as_asgi()})
