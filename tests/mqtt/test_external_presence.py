"""Presence on an external broker: birth and will messages, retained state, last-seen timeout."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime

import pytest

from django_app.models.devices import Device
from gateway import AsyncMqttConsumer, MqttTopicRouter, ProtocolTypeRouter
from gateway.db import database_sync_to_async
from gateway.types import ASGIApp
from routers import topic
from tests.integration.mosquitto import Mosquitto, running_mosquitto
from tests.mqtt.external_support import ROOT, WAIT, running_gateway, settings_for
from tests.mqtt.paho_support import PahoClient

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    with running_mosquitto() as started:
        yield started


class Telemetry(AsyncMqttConsumer):
    seen: list[tuple[str, bytes]] | None = None

    async def receive(self, payload: bytes) -> None:
        if self.seen is not None:
            self.seen.append((self.topic, payload))


def app(seen: list[tuple[str, bytes]] | None = None, *, status: bool = False) -> ASGIApp:
    routes = [topic("devices/{device_id}/telemetry", Telemetry.as_asgi(seen=seen))]
    if status:
        routes.append(topic("devices/{device_id}/status", Telemetry.as_asgi(seen=seen)))
    return ProtocolTypeRouter({"mqtt": MqttTopicRouter(routes)})


@database_sync_to_async
def add_devices(*device_ids: str) -> None:
    for device_id in device_ids:
        Device.objects.create(device_id=device_id)


@database_sync_to_async
def presence(device_id: str) -> tuple[bool, datetime | None]:
    device = Device.objects.get(device_id=device_id)
    return device.online, device.last_seen


async def until(device_id: str, online: bool) -> datetime | None:
    """Wait until the device's `online` is as expected; its last_seen then."""
    for _ in range(int(WAIT / 0.05)):
        now_online, last_seen = await presence(device_id)
        if now_online is online:
            return last_seen
        await asyncio.sleep(0.05)
    raise AssertionError(f"{device_id} never became {'online' if online else 'offline'}")


def start_device(broker: Mosquitto, device_id: str) -> subprocess.Popen[bytes]:
    """A paho device in its own process, with its birth published; SIGKILL it to kill it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.mqtt.paho_device", str(broker.port), device_id],
        cwd=ROOT,
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"ready\n"
    return proc


def kill(proc: subprocess.Popen[bytes]) -> None:
    proc.kill()  # SIGKILL: no DISCONNECT, so the broker publishes the will
    proc.wait()


async def test_a_device_killed_with_sigkill_is_marked_offline_through_its_will(
    broker: Mosquitto,
) -> None:
    await add_devices("pump-7")
    async with running_gateway(app(), settings_for(broker, PRESENCE=True)):
        device = await asyncio.to_thread(start_device, broker, "pump-7")
        try:
            seen_online = await until("pump-7", True)
        finally:
            await asyncio.to_thread(kill, device)
        seen_offline = await until("pump-7", False)
    assert seen_online is not None
    assert seen_offline is not None
    assert seen_offline >= seen_online


async def test_a_restarted_gateway_reads_the_state_from_retained_messages(
    broker: Mosquitto,
) -> None:
    await add_devices("dies", "lives", "comes")
    settings = settings_for(broker, PRESENCE=True)
    dies = await asyncio.to_thread(start_device, broker, "dies")
    lives = await asyncio.to_thread(start_device, broker, "lives")
    comes = None
    try:
        async with running_gateway(app(), settings):
            await until("dies", True)
            await until("lives", True)
        # Meanwhile, with no gateway: one device dies, another comes.
        await asyncio.to_thread(kill, dies)
        comes = await asyncio.to_thread(start_device, broker, "comes")
        async with running_gateway(app(), settings_for(broker, PRESENCE=True)):
            await until("dies", False)
            await until("comes", True)
            assert (await presence("lives"))[0] is True
    finally:
        for proc in (dies, lives, comes):
            if proc is not None:
                await asyncio.to_thread(kill, proc)


async def test_a_device_without_birth_messages_is_online_while_it_talks_then_times_out(
    broker: Mosquitto,
) -> None:
    await add_devices("chatty", "announced")
    seen: list[tuple[str, bytes]] = []
    settings = settings_for(broker, PRESENCE={"TIMEOUT": 0.6})
    async with running_gateway(app(seen), settings):
        chatty = await asyncio.to_thread(PahoClient, broker, "chatty")
        announced = await asyncio.to_thread(PahoClient, broker, "announced")
        try:
            await asyncio.to_thread(
                announced.publish, "devices/announced/status", "online", 1, True
            )
            await asyncio.to_thread(chatty.publish, "devices/chatty/telemetry", b"{}")
            first_seen = await until("chatty", True)
            await until("announced", True)
            await asyncio.sleep(0.3)
            await asyncio.to_thread(chatty.publish, "devices/chatty/telemetry", b"{}")
            # Silent past the timeout: offline, with the last time it was heard from.
            last_seen = await until("chatty", False)
            assert first_seen is not None
            assert last_seen is not None
            assert last_seen >= first_seen
            # A device that announces its presence is left to its birth and will.
            assert (await presence("announced"))[0] is True
        finally:
            chatty.close()
            announced.close()
    assert [t for t, _ in seen] == ["devices/chatty/telemetry"] * 2  # status: not routed


async def test_status_messages_reach_a_route_that_covers_them(broker: Mosquitto) -> None:
    await add_devices("pump-1")
    seen: list[tuple[str, bytes]] = []
    async with running_gateway(app(seen, status=True), settings_for(broker, PRESENCE=True)):
        device = await asyncio.to_thread(PahoClient, broker, "pump-1")
        try:
            await asyncio.to_thread(device.publish, "devices/pump-1/status", "online", 1, True)
            await until("pump-1", True)
            await asyncio.to_thread(device.publish, "devices/pump-1/status", "offline", 1, True)
            await until("pump-1", False)
        finally:
            device.close()
    assert seen[-2:] == [
        ("devices/pump-1/status", b"online"),
        ("devices/pump-1/status", b"offline"),
    ]


@pytest.mark.parametrize(
    ("shared_group", "route"),
    [
        ("gateways", "devices/{device_id}/status"),  # $share/gateways/devices/+/status
        ("gateways", "devices/{device_id}/{kind}"),
        (None, "devices/{device_id}/{kind}"),  # devices/+/+ beside the adapter's own filter
    ],
)
async def test_a_route_covering_the_status_topics_gets_each_status_message_once(
    broker: Mosquitto, shared_group: str | None, route: str
) -> None:
    """MQTT 5: Mosquitto sends a copy per subscription; the adapter's own copy is not the app's."""
    await add_devices("pump-1")
    seen: list[tuple[str, bytes]] = []
    routes = [topic(route, Telemetry.as_asgi(seen=seen))]
    if "{kind}" not in route:
        routes.append(topic("devices/{device_id}/telemetry", Telemetry.as_asgi(seen=seen)))
    application = ProtocolTypeRouter({"mqtt": MqttTopicRouter(routes)})
    settings = settings_for(broker, PRESENCE=True, SHARED_GROUP=shared_group)
    async with running_gateway(application, settings):
        device = await asyncio.to_thread(PahoClient, broker, "pump-1")
        try:
            await asyncio.to_thread(device.publish, "devices/pump-1/status", "online", 1, True)
            await until("pump-1", True)
            await asyncio.to_thread(device.publish, "devices/pump-1/telemetry", "21.5", 1)
            await asyncio.to_thread(device.publish, "devices/pump-1/status", "offline", 1, True)
            await until("pump-1", False)
            # The telemetry after the first status, the last status: whatever came twice is in.
            await asyncio.to_thread(device.publish, "devices/pump-1/telemetry", "22.5", 1)
            for _ in range(int(WAIT / 0.05)):
                if ("devices/pump-1/telemetry", b"22.5") in seen:
                    break
                await asyncio.sleep(0.05)
        finally:
            device.close()
    # Once each (the order holds per topic: different topics are handled concurrently).
    assert [m for m in seen if m[0].endswith("/status")] == [
        ("devices/pump-1/status", b"online"),
        ("devices/pump-1/status", b"offline"),
    ]
    assert [m for m in seen if m[0].endswith("/telemetry")] == [
        ("devices/pump-1/telemetry", b"21.5"),
        ("devices/pump-1/telemetry", b"22.5"),
    ]
