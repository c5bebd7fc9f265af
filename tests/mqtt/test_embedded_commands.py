"""Commands that wait for the device, on the embedded broker, with paho devices that answer.

The embedded broker speaks MQTT 3.1.1: the request's id is the command topic's last level and
the device answers on ``devices/<id>/responses/<that id>``, within its own topics (the ACL).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.exceptions import CommandTimeout
from gateway.mqtt import arequest
from tests.mqtt.command_support import (
    add_device,
    app,
    history,
    statuses_become,
)
from tests.mqtt.embedded_support import RunningBroker, running_broker
from tests.mqtt.external_support import eventually
from tests.mqtt.paho_support import AnsweringDevice, PahoClient

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

OPTIONS: dict[str, Any] = {"AUTH": "anonymous", "COMMANDS": True}
EVERY_TOPIC = "devices/{device_id}/{rest}"
"""A route covering commands and answers too: neither may reach it."""


async def device(broker: RunningBroker, device_id: str, **options: Any) -> AnsweringDevice:
    return await asyncio.to_thread(AnsweringDevice, broker, device_id, mqtt5=False, **options)


async def test_a_request_returns_the_device_s_answer() -> None:
    await add_device("pump-7")
    seen: list[str] = []
    async with running_broker(app(seen, EVERY_TOPIC), **OPTIONS) as broker:
        pump = await device(broker, "pump-7")
        try:
            answer = await arequest("pump-7", "reboot", {"now": True}, timeout=5)
            command = pump.commands.get_nowait()
        finally:
            pump.close()
        await statuses_become("pump-7", ["answered"])
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
        await statuses_become("mute", ["timed_out"])
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
    async with running_broker(app(seen, EVERY_TOPIC), **OPTIONS) as broker:
        pump = await device(broker, "pump-2")
        try:
            await arequest("pump-2", "reboot", timeout=5)
            # An answer nobody asked for is dropped (and logged), not handed to the app.
            await asyncio.to_thread(pump.publish, "devices/pump-2/responses/nope", b"{}")
            await asyncio.to_thread(pump.publish, "devices/pump-2/telemetry", b"{}")
            await eventually(lambda: bool(seen), "the telemetry")
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

        await statuses_become("sleepy", ["timed_out"])
        back = await device(broker, "sleepy", clean=False)
        try:
            await statuses_become("sleepy", ["answered_late"])
        finally:
            back.close()
