"""Commands that wait for the device, through a real Mosquitto, with paho devices that answer."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from django_app.models.commands import DeviceCommand
from gateway import MqttTopicRouter, ProtocolTypeRouter
from gateway.exceptions import ChannelFull, CommandTimeout
from gateway.mqtt import arequest, request
from routers import topic
from tests.integration.mosquitto import Mosquitto, running_mosquitto
from tests.mqtt.command_support import (
    StoreDownTwice,
    Telemetry,
    add_device,
    app,
    eventually_async,
    history,
    statuses_become,
)
from tests.mqtt.external_support import eventually, running_gateway, settings_for
from tests.mqtt.paho_support import AnsweringDevice, PahoClient

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    with running_mosquitto() as started:
        yield started


async def device(broker: Mosquitto, device_id: str, **options: Any) -> AnsweringDevice:
    return await asyncio.to_thread(AnsweringDevice, broker, device_id, **options)


@pytest.mark.parametrize("protocol", [5, "3.1.1"])
async def test_a_request_returns_the_device_s_answer(broker: Mosquitto, protocol: object) -> None:
    await add_device("pump-7")
    settings = settings_for(broker, COMMANDS=True, PROTOCOL=protocol)
    async with running_gateway(app(), settings):
        pump = await device(broker, "pump-7", mqtt5=protocol == 5)
        try:
            answer = await arequest("pump-7", "reboot", {"now": True}, timeout=5)
            command = pump.commands.get_nowait()
        finally:
            pump.close()
    assert answer.json() == {"device": "pump-7", "command": "reboot", "got": '{"now":true}'}
    [row] = await history("pump-7")
    assert (row.status, row.command, bytes(row.payload)) == ("answered", "reboot", b'{"now":true}')
    assert bytes(row.response or b"") == answer.payload
    assert row.answered_at is not None
    assert command.qos == 1
    if protocol == 5:
        assert command.topic == "devices/pump-7/commands/reboot"
        assert answer.properties["correlation_data"] == answer.request_id.encode()
    else:  # the id is the topic's last level; nothing made up in the answer's properties
        assert command.topic == f"devices/pump-7/commands/reboot/{answer.request_id}"
        assert answer.properties == {}


async def test_the_sync_request_works_from_a_worker_thread(broker: Mosquitto) -> None:
    await add_device("pump-1")
    async with running_gateway(app(), settings_for(broker, COMMANDS=True)):
        pump = await device(broker, "pump-1")
        try:
            answer = await sync_to_async(request)("pump-1", "status/read", "?", 5)
        finally:
            pump.close()
    assert answer.json()["command"] == "status/read"
    with pytest.raises(RuntimeError, match="arequest"):
        request("pump-1", "x", timeout=1)


async def test_callers_without_the_serving_process_s_loop_go_through_the_channel_layer(
    broker: Mosquitto,
) -> None:
    """A plain thread's request() runs on an event loop of its own, as another process's
    would: the request and its outcome travel on the channel layer, timeouts too."""
    await add_device("pump-1")
    await add_device("mute")
    async with running_gateway(app(), settings_for(broker, COMMANDS=True)):
        pump = await device(broker, "pump-1")
        try:
            answer = await asyncio.to_thread(request, "pump-1", "status/read", "?", 5)
            with pytest.raises(CommandTimeout):
                await asyncio.to_thread(request, "mute", "reboot", "", 0.3)
        finally:
            pump.close()
    assert answer.json()["command"] == "status/read"


async def test_many_requests_at_once_each_get_their_own_answer(broker: Mosquitto) -> None:
    ids = [f"dev-{n}" for n in range(5)]
    for device_id in ids:
        await add_device(device_id)
    async with running_gateway(app(), settings_for(broker, COMMANDS=True)):
        devices = [await device(broker, device_id) for device_id in ids]
        try:
            answers = await asyncio.gather(
                *(arequest(d, "ping", str(n), timeout=5) for d in ids for n in range(4))
            )
        finally:
            for each in devices:
                each.close()
    got = sorted((a.json()["device"], a.json()["got"]) for a in answers)
    assert got == sorted((d, str(n)) for d in ids for n in range(4))


async def test_a_device_that_does_not_answer_times_out(broker: Mosquitto) -> None:
    await add_device("mute")
    async with running_gateway(app(), settings_for(broker, COMMANDS=True)):
        silent = await asyncio.to_thread(PahoClient, broker, "mute")
        try:
            await asyncio.to_thread(silent.subscribe, "devices/mute/commands/#")
            with pytest.raises(CommandTimeout, match="did not answer") as raised:
                await arequest("mute", "reboot", b"", timeout=0.3)
            assert (await silent.next()).topic == "devices/mute/commands/reboot"
        finally:
            silent.close()
    [row] = await history("mute")
    assert row.status == "timed_out"
    assert row.request_id == raised.value.request_id
    assert isinstance(raised.value, TimeoutError)


async def test_an_answer_after_the_timeout_is_recorded_not_raised(broker: Mosquitto) -> None:
    await add_device("slow")
    async with running_gateway(app(), settings_for(broker, COMMANDS=True)):
        slow = await device(broker, "slow", delay=0.8)
        try:
            with pytest.raises(CommandTimeout):
                await arequest("slow", "reboot", "now", timeout=0.2)
            rows: list[DeviceCommand] = []

            async def answered() -> bool:
                rows[:] = await history("slow")
                return bool(rows) and rows[0].status == "answered_late"

            await eventually_async(answered, "the late answer to be recorded")
        finally:
            slow.close()
    assert b'"got": "now"' in bytes(rows[0].response or b"")


async def test_a_command_to_an_offline_device_is_queued_and_its_answer_recorded_later(
    broker: Mosquitto,
) -> None:
    await add_device("sleepy")
    away = await device(broker, "sleepy", clean=False)  # a persistent session, QoS 1
    away.close()
    async with running_gateway(app(), settings_for(broker, COMMANDS=True)):
        with pytest.raises(CommandTimeout):
            await arequest("sleepy", "wake", "up", timeout=0.3)

        await statuses_become("sleepy", ["timed_out"])
        back = await device(broker, "sleepy", clean=False)
        try:
            await statuses_become("sleepy", ["answered_late"])
        finally:
            back.close()


async def test_history_a_failed_write_kept_is_written_by_the_next_one(
    broker: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    """The store fails twice (a locked database): the changes wait for the next write, in
    order, none lost and none written twice."""
    StoreDownTwice.kept, StoreDownTwice.calls = [], 0
    store = f"{StoreDownTwice.__module__}.{StoreDownTwice.__qualname__}"
    settings = settings_for(broker, COMMANDS={"STORE": store})
    async with running_gateway(app(), settings):
        with pytest.raises(CommandTimeout) as raised:
            await arequest("mute", "reboot", "now", timeout=0.2)
        await eventually_async(
            lambda: asyncio.sleep(0, len(StoreDownTwice.kept) == 2), "the history written"
        )
    assert [(c.kind, c.request_id) for c in StoreDownTwice.kept] == [
        ("sent", raised.value.request_id),
        ("timed_out", raised.value.request_id),
    ]
    assert StoreDownTwice.calls >= 3
    assert caplog.text.count("changes of the command history failed") == 2


async def test_answers_never_reach_the_application(broker: Mosquitto) -> None:
    await add_device("pump-2")
    seen: list[str] = []
    async with running_gateway(app(seen), settings_for(broker, COMMANDS=True)):
        pump = await device(broker, "pump-2")
        try:
            await arequest("pump-2", "reboot", timeout=5)
            await asyncio.to_thread(pump.publish, "devices/pump-2/telemetry", b"{}")
            await eventually(lambda: bool(seen), "the telemetry")
            # An answer nobody asked for is dropped (and logged), not handed to the app.
            await asyncio.to_thread(pump.publish, "devices/pump-2/responses/nope", b"{}")
            await asyncio.to_thread(pump.publish, "devices/pump-2/telemetry", b"{}")
            await eventually(lambda: len(seen) == 2, "the second telemetry")
        finally:
            pump.close()
    assert seen == ["devices/pump-2/telemetry"] * 2


async def test_a_burst_larger_than_the_request_channel_waits_for_room(
    broker: Mosquitto, settings: Any
) -> None:
    """More requests at once than the channel holds: each waits for room, none fails."""
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "gateway.layers.InMemoryChannelLayer",
            "CONFIG": {"channel_capacity": {"gateway.mqtt.request": 2}},
        }
    }
    await add_device("pump-7")

    async def burst() -> list[Any]:
        return await asyncio.gather(
            *(arequest("pump-7", "count", {"n": n}, timeout=5) for n in range(30))
        )

    async with running_gateway(app(), settings_for(broker, COMMANDS=True)):
        pump = await device(broker, "pump-7")
        try:
            # Callers on another event loop, as in another process: through the channel.
            answers = await asyncio.to_thread(asyncio.run, burst())
        finally:
            pump.close()
    assert [a.json()["got"] for a in answers] == [f'{{"n":{n}}}' for n in range(30)]


async def test_a_request_channel_that_stays_full_fails_the_command_saying_so(
    settings: Any,
) -> None:
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "gateway.layers.InMemoryChannelLayer",
            "CONFIG": {"channel_capacity": {"gateway.mqtt.request": 1}},
        }
    }
    nobody_serving = asyncio.ensure_future(arequest("pump-7", "first", timeout=0.2))
    await asyncio.sleep(0)  # the first request fills the channel
    with pytest.raises(ChannelFull, match=r"stayed full for 0.2s.*'second' to pump-7 was not"):
        await arequest("pump-7", "second", timeout=0.2)
    nobody_serving.cancel()


@pytest.mark.parametrize("shared_group", [None, "gateways"])
async def test_a_route_covering_the_response_topics_gets_no_answer(
    broker: Mosquitto, shared_group: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    """MQTT 5: the route's copy of an answer (a copy per subscription) is dropped, not handled
    twice: the history says answered, not answered late."""
    caplog.set_level(logging.INFO, "gateway.mqtt")
    await add_device("pump-2")
    seen: list[str] = []
    routes = [topic("devices/{device_id}/{kind}/{rest}", Telemetry.as_asgi(seen=seen))]
    routes.append(topic("devices/{device_id}/telemetry", Telemetry.as_asgi(seen=seen)))
    application = ProtocolTypeRouter({"mqtt": MqttTopicRouter(routes)})
    settings = settings_for(broker, COMMANDS=True, SHARED_GROUP=shared_group)
    async with running_gateway(application, settings):
        pump = await device(broker, "pump-2")
        try:
            await arequest("pump-2", "reboot", timeout=5)
            await asyncio.to_thread(pump.publish, "devices/pump-2/telemetry", b"{}")
            await eventually(lambda: "devices/pump-2/telemetry" in seen, "the telemetry")
        finally:
            pump.close()
    # The route covers the command (the gateway's own publish) too; the answer, never.
    assert sorted(seen) == ["devices/pump-2/commands/reboot", "devices/pump-2/telemetry"]
    [row] = await history("pump-2")
    assert row.status == "answered"
    assert "after its timeout" not in caplog.text
