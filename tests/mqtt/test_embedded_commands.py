"""Commands that wait for the device, on the embedded broker, with paho devices that answer.

The embedded broker speaks MQTT 3.1.1: the request's id is the command topic's last level and
the device answers on ``devices/<id>/responses/<that id>``, within its own topics (the ACL).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from django_app.models.commands import DeviceCommand
from django_app.models.devices import Device
from gateway import AsyncMqttConsumer, MqttTopicRouter, ProtocolTypeRouter
from gateway.db import database_sync_to_async
from gateway.exceptions import CommandTimeout
from gateway.mqtt import arequest
from gateway.types import ASGIApp
from routers import topic
from tests.mqtt.embedded_support import RunningBroker, running_broker
from tests.mqtt.paho_support import AnsweringDevice, PahoClient

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

OPTIONS: dict[str, Any] = {"AUTH": "anonymous", "COMMANDS": True}


class Telemetry(AsyncMqttConsumer):
    seen: list[str] | None = None

    async def receive(self, payload: bytes) -> None:
        if self.seen is not None:
            self.seen.append(self.topic)


def app(seen: list[str] | None = None) -> ASGIApp:
    routes = [topic("devices/{device_id}/{rest}", Telemetry.as_asgi(seen=seen))]
    return ProtocolTypeRouter({"mqtt": MqttTopicRouter(routes)})


@database_sync_to_async
def add_device(device_id: str) -> Device:
    return Device.objects.create(device_id=device_id)


@database_sync_to_async
def history(device_id: str) -> list[DeviceCommand]:
    return list(DeviceCommand.objects.filter(device__device_id=device_id).order_by("sent_at"))


async def device(broker: RunningBroker, device_id: str, **options: Any) -> AnsweringDevice:
    return await asyncio.to_thread(AnsweringDevice, broker, device_id, mqtt5=False, **options)


async def eventually(check: Any, what: str) -> None:
    for _ in range(500):
        if await check():
            return
        await asyncio.sleep(0.04)
    raise AssertionError(f"timed out waiting for {what}")


async def test_a_request_returns_the_device_s_answer() -> None:
    await add_device("pump-7")
    seen: list[str] = []
    async with running_broker(app(seen), **OPTIONS) as broker:
        pump = await device(broker, "pump-7")
        try:
            answer = await arequest("pump-7", "reboot", {"now": True}, timeout=5)
            command = pump.commands.get_nowait()
        finally:
            pump.close()

        async def recorded() -> bool:
            return [r.status for r in await history("pump-7")] == ["answered"]

        await eventually(recorded, "the answer in the history")
    assert answer.json() == {"device": "pump-7", "command": "reboot", "got": '{"now":true}'}
    assert command.topic == f"devices/pump-7/commands/reboot/{answer.request_id}"
    assert command.qos == 1
    assert answer.properties == {}  # MQTT 3.1.1: nothing made up
    [row] = await history("pump-7")
    assert bytes(row.response or b"") == answer.payload
    assert seen == []  # the answer is the gateway's own; the command is not the app's either


async def test_a_device_that_does_not_answer_times_out() -> None:
    await add_device("mute")
    async with running_broker(app(), **OPTIONS) as broker:
        silent = await asyncio.to_thread(PahoClient, broker, "mute", mqtt5=False)
        try:
            await asyncio.to_thread(silent.subscribe, "devices/mute/commands/#")
            with pytest.raises(CommandTimeout) as raised:
                await arequest("mute", "reboot", b"", timeout=0.3)
            got = await silent.next()
        finally:
            silent.close()

        async def timed_out() -> bool:
            return [r.status for r in await history("mute")] == ["timed_out"]

        await eventually(timed_out, "the timeout in the history")
    assert got.topic == f"devices/mute/commands/reboot/{raised.value.request_id}"


async def test_another_device_cannot_answer_for_it() -> None:
    """The ACL keeps a device to its own topics: a forged answer is dropped, not taken."""
    await add_device("mute")
    async with running_broker(app(), **OPTIONS) as broker:
        silent = await asyncio.to_thread(PahoClient, broker, "mute", mqtt5=False)
        forger = await asyncio.to_thread(PahoClient, broker, "forger", mqtt5=False)
        try:
            await asyncio.to_thread(silent.subscribe, "devices/mute/commands/#")
            asked = asyncio.ensure_future(arequest("mute", "unlock", b"", timeout=1.0))
            request_id = (await silent.next()).topic.rsplit("/", 1)[1]
            forged = f"devices/mute/responses/{request_id}"
            await asyncio.to_thread(forger.publish, forged, b'{"ok": true}')
            with pytest.raises(CommandTimeout):
                await asked
        finally:
            silent.close()
            forger.close()
    assert broker.metrics.get("mqtt", "rejected") == 1


async def test_answers_never_reach_the_application_and_telemetry_does() -> None:
    await add_device("pump-2")
    seen: list[str] = []
    async with running_broker(app(seen), **OPTIONS) as broker:
        pump = await device(broker, "pump-2")
        try:
            await arequest("pump-2", "reboot", timeout=5)
            # An answer nobody asked for is dropped (and logged), not handed to the app.
            await asyncio.to_thread(pump.publish, "devices/pump-2/responses/nope", b"{}")
            await asyncio.to_thread(pump.publish, "devices/pump-2/telemetry", b"{}")

            async def arrived() -> bool:
                return bool(seen)

            await eventually(arrived, "the telemetry")
        finally:
            pump.close()
    assert seen == ["devices/pump-2/telemetry"]


async def test_a_command_to_an_offline_device_is_queued_and_its_answer_recorded_later() -> None:
    await add_device("sleepy")
    async with running_broker(app(), **OPTIONS) as broker:
        away = await device(broker, "sleepy", clean=False)  # a persistent session, QoS 1
        await asyncio.to_thread(away.close)
        with pytest.raises(CommandTimeout):
            await arequest("sleepy", "wake", "up", timeout=0.3)

        async def timed_out() -> bool:
            return [r.status for r in await history("sleepy")] == ["timed_out"]

        await eventually(timed_out, "the timeout in the history")
        back = await device(broker, "sleepy", clean=False)
        try:

            async def answered() -> bool:
                return [r.status for r in await history("sleepy")] == ["answered_late"]

            await eventually(answered, "the queued command's answer")
        finally:
            back.close()
