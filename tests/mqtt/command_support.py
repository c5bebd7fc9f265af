"""What the tests of commands that wait for the device share, whichever broker serves them."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import ClassVar

from django_app.models.commands import DeviceCommand
from django_app.models.devices import Device
from gateway import AsyncMqttConsumer, MqttTopicRouter, ProtocolTypeRouter
from gateway.db import database_sync_to_async
from gateway.mqtt_requests import CommandChange
from gateway.types import ASGIApp
from routers import topic


class Telemetry(AsyncMqttConsumer):
    """Records the topic of every message it gets in `seen`."""

    seen: list[str] | None = None

    async def receive(self, payload: bytes) -> None:
        if self.seen is not None:
            self.seen.append(self.topic)


def app(seen: list[str] | None = None, pattern: str = "devices/{device_id}/telemetry") -> ASGIApp:
    """The application: `pattern` routed to `Telemetry`."""
    routes = [topic(pattern, Telemetry.as_asgi(seen=seen))]
    return ProtocolTypeRouter({"mqtt": MqttTopicRouter(routes)})


@database_sync_to_async
def add_device(device_id: str) -> Device:
    return Device.objects.create(device_id=device_id)


@database_sync_to_async
def history(device_id: str) -> list[DeviceCommand]:
    """The device's `DeviceCommand` rows, oldest first."""
    return list(DeviceCommand.objects.filter(device__device_id=device_id).order_by("sent_at"))


async def eventually_async(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Wait until `check()` answers True (20 s at most: only turns a hang into a failure)."""
    for _ in range(500):
        if await check():
            return
        await asyncio.sleep(0.04)
    raise AssertionError(f"timed out waiting for {what}")


async def statuses_become(device_id: str, expected: list[str]) -> None:
    """Wait until the device's history holds commands of exactly these statuses, in order."""

    async def reached() -> bool:
        return [row.status for row in await history(device_id)] == expected

    await eventually_async(reached, f"{device_id}'s history to be {expected}")


class StoreDownTwice:
    """A command store (the ``STORE`` option) whose database is away for its first two
    writes, as a locked or restarting one is; then it keeps every change it is given."""

    kept: ClassVar[list[CommandChange]] = []
    calls: ClassVar[int] = 0

    async def record(self, changes: Sequence[CommandChange]) -> list[str]:
        type(self).calls += 1
        if type(self).calls <= 2:
            raise OSError("the database is away")
        self.kept.extend(changes)
        return []
