"""`ProtocolAdapter.http_routes()`: adapter paths served by the gateway before the root app."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import httpx
import pytest

from gateway.adapters import Listener, ProtocolAdapter
from gateway.conf import GatewaySettings
from gateway.server import Gateway
from gateway.types import ASGIApp, Receive, Scope, Send

WAIT = 30.0


async def hook(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 202, "headers": []})
    await send({"type": "http.response.body", "body": b"adapter " + scope["path"].encode()})


class HookAdapter(ProtocolAdapter):
    protocol = "hook"

    async def start(self) -> list[Listener]:
        return []

    async def stop(self, timeout: float) -> None:
        pass

    def http_routes(self) -> Mapping[str, ASGIApp]:
        return dict.fromkeys(self.context.options["PATHS"], hook)


async def root(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        raise ValueError("no lifespan")
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"root"})


def settings(paths: list[str], **extra: Any) -> GatewaySettings:
    adapter = {"BACKEND": f"{__name__}.HookAdapter", "OPTIONS": {"PATHS": paths}}
    return GatewaySettings({"ADAPTERS": {"hook": adapter}, "LOOP": "asyncio", **extra})


async def test_adapter_paths_are_served_before_the_root_app() -> None:
    gateway = Gateway(root, settings=settings(["/hooks/a/"]), host="127.0.0.1", port=0)
    ready = asyncio.Event()
    serving = asyncio.create_task(gateway.serve(ready))
    await asyncio.wait_for(ready.wait(), WAIT)
    url = gateway.listeners[0].address
    try:
        async with httpx.AsyncClient() as client:
            hooked = await client.post(url + "/hooks/a/")
            other = await client.get(url + "/hooks/a/b")
            health = await client.get(url + "/-/health")
    finally:
        gateway.stop()
        assert await asyncio.wait_for(serving, WAIT) == 0
    assert (hooked.status_code, hooked.text) == (202, "adapter /hooks/a/")
    assert (other.status_code, other.text) == (200, "root")
    assert health.json()["adapters"]["hook"]["status"] == "ok"


async def test_conflicting_or_unservable_paths_stop_the_start(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cases = [
        (settings(["/-/health"]), "is the gateway's own"),
        (settings(["no-slash"]), "must start with '/'"),
        (settings(["/hooks/"], HTTP={"ENABLED": False}), "HTTP is disabled"),
    ]
    for gateway_settings, reason in cases:
        caplog.clear()
        gateway = Gateway(root, settings=gateway_settings, host="127.0.0.1", port=0)
        assert await asyncio.wait_for(gateway.serve(), WAIT) == 1
        assert reason in caplog.text
