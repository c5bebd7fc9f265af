"""The issue's check: a device's MQTT message handled by gateway A, whose group_send reaches a
WebSocket on gateway B through Redis, is one trace with spans from both processes; A's reply
publish carries the trace on to MQTT 5 subscribers."""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from tests.integration.mosquitto import Mosquitto, running_mosquitto
from tests.integration.redis import RedisServer, redis_server
from tests.mqtt.external_support import Subscriber, mosquitto_pub
from tests.server.process import GatewayProcess, gateway_env, spawn, wait_ready

__all__ = ["redis_server"]

pytest.importorskip("opentelemetry.sdk")
pytestmark = [pytest.mark.e2e, pytest.mark.integration]

APP = "tests.tracing.trace_app:application"
DEVICE_TRACE = "0af7651916cd43dd8448eb211c80319c"
TRACEPARENT = f"00-{DEVICE_TRACE}-b7ad6b7169203331-01"
WAIT = 30.0  # generous: only there to fail instead of hanging


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    with running_mosquitto() as started:
        yield started


def _start(directory: Path, env: dict[str, str]) -> GatewayProcess:
    directory.mkdir()
    environment = gateway_env(directory, settings="tests.tracing.trace_settings")
    environment.update(env, TRACE_TEST_SPANS=str(directory / "spans.jsonl"))
    command = [sys.executable, "-m", "gateway", "run", APP, "--port", "0"]
    return spawn(directory, env=environment, command=command)


@pytest.fixture
def gateways(
    redis_server: RedisServer, broker: Mosquitto, tmp_path: Path
) -> Iterator[tuple[GatewayProcess, GatewayProcess]]:
    """A (MQTT intake on Mosquitto) and B (WebSockets only), on one Redis channel layer."""
    layer = {
        "GATEWAY_TEST_REDIS_URL": redis_server.url,
        "GATEWAY_TEST_REDIS_PREFIX": f"trace-{secrets.token_hex(4)}",
    }
    a = _start(tmp_path / "a", {**layer, "TRACE_TEST_MQTT_URL": broker.url})
    b = _start(tmp_path / "b", layer)
    try:
        assert wait_ready(a), a.stderr()
        assert wait_ready(b), b.stderr()
        yield a, b
    finally:
        a.kill()
        b.kill()


def _spans(process: GatewayProcess, name: str) -> dict[str, Any]:
    """The span called `name` in the process's export, waiting for it to be written."""
    path = process.stderr_path.with_name("spans.jsonl")
    deadline = time.monotonic() + WAIT
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        for span in map(json.loads, lines):
            if span["name"] == name:
                return dict(span)
        assert time.monotonic() < deadline, (name, lines)
        time.sleep(0.05)


async def test_device_to_websocket_on_another_process_is_one_trace(
    gateways: tuple[GatewayProcess, GatewayProcess], broker: Mosquitto
) -> None:
    a, b = gateways
    acks = await Subscriber.start(broker, "devices/+/ack", "-V", "mqttv5", "-F", "%t %P")
    try:
        async with connect(b.ws_url + "/ws/dashboard/", open_timeout=WAIT) as browser:
            assert await asyncio.wait_for(browser.recv(), WAIT) == "joined"
            user_property = ["-V", "mqttv5", "-D", "publish", "user-property", "traceparent"]
            await mosquitto_pub(broker, "devices/d1/telemetry", "21", *user_property, TRACEPARENT)
            assert await asyncio.wait_for(browser.recv(), WAIT) == "21"
        ack = (await acks.message()).decode()
    finally:
        await acks.close()
    # The consumer's publish carries the trace on to MQTT 5 subscribers.
    assert ack.startswith("devices/d1/ack ")
    assert f"traceparent:00-{DEVICE_TRACE}-" in ack

    event = await asyncio.to_thread(_spans, a, "mqtt devices/d1/telemetry")
    group_send = await asyncio.to_thread(_spans, a, "group_send dashboard")
    websocket = await asyncio.to_thread(_spans, b, "Dashboard.reading")
    trace_ids = {span["context"]["trace_id"] for span in (event, group_send, websocket)}
    assert trace_ids == {f"0x{DEVICE_TRACE}"}
    assert event["parent_id"] == "0xb7ad6b7169203331"
    assert event["attributes"]["gateway.outcome"] == "handled"
    assert websocket["parent_id"] == group_send["context"]["span_id"]
