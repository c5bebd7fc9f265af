"""Backpressure and bad input at the embedded broker: bounded memory, dead letters."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from gateway.consumers.mqtt import AsyncJsonMqttConsumer
from gateway.types import Receive, Scope, Send
from protocol_adapters.mqtt.embedded_connections import READ_BUFFER
from routers import ProtocolTypeRouter
from routers.mqtt import MqttTopicRouter, topic
from tests.mqtt.embedded_support import (
    WAIT,
    RunningBroker,
    mosquitto,
    mosquitto_pub,
    running_broker,
)

pytestmark = pytest.mark.integration

FLOOD = 300
MAX_IN_FLIGHT = 4


class Gated:
    """A consumer slower than any publisher: nothing finishes until `open` is set."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.payloads: list[bytes] = []
        self.done = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        event = await receive()
        await self.open.wait()
        self.payloads.append(event["payload"])
        if len(self.payloads) == FLOOD:
            self.done.set()


async def _until(condition: Any) -> None:
    async with asyncio.timeout(WAIT):
        while not condition():
            await asyncio.sleep(0.01)


def _paused(run: RunningBroker) -> bool:
    return any(connection.paused for connection in run.adapter.connections.values())


async def test_a_flood_faster_than_the_consumer_stays_bounded() -> None:
    app = Gated()
    # 300 KB in all: more than a connection buffers before it stops reading its socket.
    lines = "".join(f"{_reading(n)}\n" for n in range(FLOOD)).encode()
    options = {"AUTH": "anonymous", "MAX_IN_FLIGHT": MAX_IN_FLIGHT, "SUBSCRIPTIONS": ["#"]}
    async with running_broker(app, **options) as run:
        proc = await asyncio.create_subprocess_exec(
            mosquitto("mosquitto_pub"), "-h", "127.0.0.1", "-p", str(run.port),
            "-i", "flood", "-t", "devices/flood/telemetry", "-l",
            stdin=asyncio.subprocess.PIPE,
        )  # fmt: skip
        writing = asyncio.create_task(proc.communicate(lines))
        # The consumer holds every message: the intake fills, then the connection stops reading.
        await _until(lambda: _paused(run))
        intake = run.adapter.intake
        assert intake is not None
        assert intake.in_flight == MAX_IN_FLIGHT
        [connection] = run.adapter.connections.values()
        # Read ahead, no further: unhandled bytes stop at the buffer's size plus one read.
        assert len(connection.reader.buffer) <= READ_BUFFER + 256 * 1024
        app.open.set()
        await asyncio.wait_for(app.done.wait(), WAIT)
        await asyncio.wait_for(writing, WAIT)
        assert run.adapter.peak_in_flight <= MAX_IN_FLIGHT
        assert run.metrics.gauge("mqtt", "in_flight") <= MAX_IN_FLIGHT
    assert app.payloads == [_reading(n).encode() for n in range(FLOOD)]  # nothing lost, in order


def _reading(n: int) -> str:
    return str(n).ljust(1000, ".")


class Readings(AsyncJsonMqttConsumer):
    received: asyncio.Queue[Any]

    async def receive_json(self, data: Any) -> None:
        await self.received.put(data)


async def test_non_utf8_and_invalid_json_are_dead_lettered(tmp_path: Path) -> None:
    Readings.received = asyncio.Queue()
    app = ProtocolTypeRouter(
        {"mqtt": MqttTopicRouter([topic("devices/{device_id}/telemetry", Readings.as_asgi())])}
    )
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    target = ["-t", "devices/d1/telemetry", "-i", "d1"]
    async with running_broker(app, AUTH="anonymous") as run:
        assert (await mosquitto_pub(run.port, *target, "-f", str(binary)))[0] == 0
        assert (await mosquitto_pub(run.port, *target, "-m", "{not json"))[0] == 0
        assert (await mosquitto_pub(run.port, *target, "-m", '{"t": 1}'))[0] == 0
        assert await asyncio.wait_for(Readings.received.get(), WAIT) == {"t": 1}
        await _until(lambda: len(run.dead_letters) == 2)
        assert run.adapter.health().status == "ok"  # still serving
    first, second = run.dead_letters
    assert first.payload == b"\xff\xfe\x00garbage"
    assert second.payload == b"{not json"
    assert all("not UTF-8 JSON" in letter.error for letter in run.dead_letters)
    assert [letter.attempts for letter in run.dead_letters] == [1, 1]  # never retried
