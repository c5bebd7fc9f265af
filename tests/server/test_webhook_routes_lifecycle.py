"""An adapter's webhook paths and the HTTP server's life: the server listens only once every
adapter has mounted its paths, and an adapter serving HTTP stops only after the HTTP server
drained, so a webhook request is never answered by the root app (404) while its adapter
starts, nor by a stopped adapter while HTTP still drains it (found by the deploy/local
topology test: a Twilio webhook during a rolling restart got 404, or 200 without its reply)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Mapping
from typing import Any

from gateway.adapters import AdapterHealth, Listener, ProtocolAdapter
from gateway.conf import GatewaySettings
from gateway.server import Gateway
from gateway.types import ASGIApp, Receive, Scope, Send
from tests.integration.support import free_port

HOOK = "tests.server.test_webhook_routes_lifecycle.HookAdapter"
WAIT = 30.0


class HookAdapter(ProtocolAdapter):
    """POST /hook/ answers "handled" while running, 503 "stopped" once stopped; its start
    waits for `HookAdapter.release`."""

    protocol = "hook"
    release: asyncio.Event
    starting: asyncio.Event

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stopped = False

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> list[str]:
        return []

    async def start(self) -> list[Listener]:
        HookAdapter.starting.set()
        await HookAdapter.release.wait()
        return []

    async def stop(self, timeout: float) -> None:
        self.stopped = True

    def health(self) -> AdapterHealth:
        return AdapterHealth("ok", "")

    def http_routes(self) -> Mapping[str, ASGIApp]:
        return {"/hook/": self.hook}

    async def hook(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        status, text = (503, b"stopped") if self.stopped else (200, b"handled " + body)
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": text})


async def root_app(scope: Scope, receive: Receive, send: Send) -> None:
    """The root application: 404 for everything (Django's answer to an unknown path)."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    await send({"type": "http.response.start", "status": 404, "headers": []})
    await send({"type": "http.response.body", "body": b"not found"})


def gateway(port: int) -> Gateway:
    HookAdapter.release = asyncio.Event()
    HookAdapter.starting = asyncio.Event()
    settings = GatewaySettings(
        {
            "HTTP": {"HOST": "127.0.0.1", "PORT": port},
            "SHUTDOWN_TIMEOUT": 5,
            "ADAPTERS": {"hook": {"BACKEND": HOOK}},
        }
    )
    return Gateway(root_app, settings=settings)


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


async def post(port: int, body: bytes = b"sms") -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /hook/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
        % (len(body), body)
    )
    answer = await asyncio.wait_for(reader.read(), WAIT)
    writer.close()
    return answer


async def test_http_listens_only_once_the_adapters_paths_are_mounted() -> None:
    port = free_port()
    server = gateway(port)
    ready = asyncio.Event()
    task = asyncio.create_task(server.serve(ready))
    await asyncio.wait_for(HookAdapter.starting.wait(), WAIT)
    await asyncio.sleep(0.2)
    assert refused(port)  # not listening while the adapter starts: no 404 for its webhook
    HookAdapter.release.set()
    await asyncio.wait_for(ready.wait(), WAIT)
    assert [item.protocol for item in server.listeners] == ["http"]
    answer = await post(port)
    assert answer.startswith(b"HTTP/1.1 200"), answer
    assert b"handled sms" in answer, answer
    server.stop()
    assert await asyncio.wait_for(task, WAIT) == 0


async def test_a_webhook_request_in_flight_at_the_stop_is_handled_by_the_running_adapter() -> None:
    port = free_port()
    server = gateway(port)
    ready = asyncio.Event()
    task = asyncio.create_task(server.serve(ready))
    HookAdapter.release.set()
    await asyncio.wait_for(ready.wait(), WAIT)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /hook/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 6\r\n\r\nlat"
    )  # half
    await writer.drain()
    await asyncio.sleep(0.3)  # the request is in the adapter's route, reading its body
    server.stop()  # SIGTERM
    await asyncio.sleep(0.5)  # the drain has begun
    writer.write(b"e!!")
    answer = await asyncio.wait_for(reader.read(), WAIT)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 200"), answer
    assert b"handled late!!" in answer, answer
    assert await asyncio.wait_for(task, WAIT) == 0
