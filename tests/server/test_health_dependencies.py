"""`/-/health` follows the channel layer's Redis and the external broker: real servers, stopped
and started again by the test. Liveness (`/-/health`) stays 200 throughout; readiness
(`/-/health/ready`) is 503 while either is away, and 200 again once it is back. And readiness
turns false as soon as a drain begins."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from django.test import override_settings

from gateway.conf import GatewaySettings
from gateway.layers import DEFAULT_CHANNEL_LAYER, channel_layers
from gateway.server import Gateway
from gateway.types import Receive, Scope, Send
from tests.integration.mosquitto import Mosquitto, running_mosquitto
from tests.integration.redis import RedisServer, own_redis_server  # noqa: F401
from tests.mqtt.external_support import running_gateway, settings_for
from tests.server.test_gateway import App, http_url, start

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

WAIT = 20.0  # only turns a hang into a failure


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    with running_mosquitto() as started:
        yield started


def redis_layer(server: RedisServer) -> dict[str, Any]:
    config = {"hosts": [server.url], "prefix": "health", "backoff_max": 0.5}
    return {"default": {"BACKEND": "gateway.layers.redis.RedisChannelLayer", "CONFIG": config}}


async def until(client: httpx.AsyncClient, status: str) -> dict[str, Any]:
    """Poll `/-/health` until its status is `status`; its body then."""
    deadline = time.monotonic() + WAIT
    while True:
        body: dict[str, Any] = (await client.get("/-/health")).json()
        if body["status"] == status:
            return body
        assert time.monotonic() < deadline, f"health never became {status!r}: {body}"
        await asyncio.sleep(0.1)


async def probe_codes(client: httpx.AsyncClient) -> tuple[int, int]:
    """The HTTP status of the liveness and the readiness path."""
    live, ready = await client.get("/-/health"), await client.get("/-/health/ready")
    assert live.json()["status"] == ready.json()["status"]
    return live.status_code, ready.status_code


def pings(server: RedisServer) -> int:
    """How many PING commands the server has answered since it started."""
    found = re.search(rb"cmdstat_ping:calls=(\d+)", server.command("INFO commandstats"))
    return int(found.group(1)) if found else 0


async def test_redis_outage_makes_health_degraded_and_not_ready(
    own_redis_server: RedisServer,  # noqa: F811
) -> None:
    settings = GatewaySettings({"HTTP": {"PORT": 0}, "SHUTDOWN_TIMEOUT": 2})
    with override_settings(CHANNEL_LAYERS=redis_layer(own_redis_server)):
        async with (
            running_gateway(App(), settings) as gateway,
            httpx.AsyncClient(base_url=http_url(gateway.listeners)) as client,
        ):
            body = await until(client, "ok")
            assert body["channel_layer"] == {
                "backend": "gateway.layers.redis.core.RedisChannelLayer",
                "status": "ok",
                "detail": "reachable",
            }
            assert (body["live"], body["ready"]) == (True, True)
            assert await probe_codes(client) == (200, 200)

            await asyncio.to_thread(own_redis_server.stop)
            body = await until(client, "degraded")
            assert body["channel_layer"]["status"] == "degraded"
            assert "unreachable" in body["channel_layer"]["detail"]
            assert (body["live"], body["ready"]) == (True, False)
            assert await probe_codes(client) == (200, 503)

            await asyncio.to_thread(own_redis_server.start)
            body = await until(client, "ok")
            assert body["channel_layer"]["detail"] == "reachable"
            assert await probe_codes(client) == (200, 200)
        await channel_layers[DEFAULT_CHANNEL_LAYER].close()


async def test_health_requests_do_not_reach_redis(
    own_redis_server: RedisServer,  # noqa: F811
) -> None:
    settings = GatewaySettings({"HTTP": {"PORT": 0}, "SHUTDOWN_TIMEOUT": 2})
    with override_settings(CHANNEL_LAYERS=redis_layer(own_redis_server)):
        async with (
            running_gateway(App(), settings) as gateway,
            httpx.AsyncClient(base_url=http_url(gateway.listeners)) as client,
        ):
            before, started = pings(own_redis_server), time.monotonic()
            for _ in range(100):
                assert (await client.get("/-/health/ready")).status_code == 200
            elapsed = time.monotonic() - started
            # One PING per probe interval (2 s), whatever the number of health requests.
            assert pings(own_redis_server) - before <= 1 + int(elapsed / 2)
        await channel_layers[DEFAULT_CHANNEL_LAYER].close()


async def test_a_lost_broker_connection_makes_health_degraded_and_not_ready(
    broker: Mosquitto,
) -> None:
    async with (
        running_gateway(App(), settings_for(broker)) as gateway,
        httpx.AsyncClient(base_url=http_url(gateway.listeners)) as client,
    ):
        assert (await until(client, "ok"))["adapters"]["broker"]["status"] == "ok"
        assert await probe_codes(client) == (200, 200)

        await asyncio.to_thread(broker.kill)
        body = await until(client, "degraded")
        assert body["adapters"]["broker"]["status"] == "degraded"
        assert (body["live"], body["ready"]) == (True, False)
        assert await probe_codes(client) == (200, 503)

        await asyncio.to_thread(broker.start)
        await until(client, "ok")
        assert await probe_codes(client) == (200, 200)


class SlowApp(App):
    """Holds every HTTP request until `release` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.run_lifespan(receive, send)
            return
        self.started.set()
        await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"slow"})


async def ready_code(client: httpx.AsyncClient) -> int | None:
    """The readiness path's HTTP status, or None when the connection is refused or dropped."""
    try:
        return (await client.get("/-/health/ready")).status_code
    except httpx.TransportError:
        return None


async def test_readiness_turns_false_while_draining() -> None:
    app = SlowApp()
    gateway = Gateway(app, settings=GatewaySettings({"HTTP": {"PORT": 0}, "SHUTDOWN_TIMEOUT": 5}))
    task = await start(gateway)
    url = http_url(gateway.listeners)
    async with httpx.AsyncClient(base_url=url) as client, httpx.AsyncClient(base_url=url) as probe:
        assert await ready_code(probe) == 200
        slow = asyncio.create_task(client.get("/slow"))
        await asyncio.wait_for(app.started.wait(), WAIT)
        gateway.stop()
        await asyncio.sleep(0.2)  # the drain has begun; the slow request is still in flight
        assert not slow.done()
        report = gateway.health()
        assert (report["status"], report["live"], report["ready"]) == ("down", False, False)
        assert await ready_code(probe) in (503, None)  # answered 503, or no longer accepted
        app.release.set()
        assert (await slow).text == "slow"  # what was in flight is still served
    assert await asyncio.wait_for(task, WAIT) == 0
