"""A device simulator plugged into the gateway as a protocol adapter.

Each simulated device reports a temperature and a battery level every INTERVAL seconds. The
readings reach every open dashboard through the channel layer, as a real device's MQTT
messages will once the MQTT adapter is enabled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import Mapping
from typing import Any

from gateway import get_channel_layer
from protocol_adapters.base import AdapterContext, AdapterHealth, Listener, ProtocolAdapter

from .consumers import GROUP

logger = logging.getLogger("gateway.demo")


class DeviceSimulator(ProtocolAdapter):
    """Publishes readings of a few fake devices to the `dashboard` group."""

    protocol = "simulator"

    def __init__(self, context: AdapterContext) -> None:
        super().__init__(context)
        self.devices = int(context.options.get("DEVICES", 3))
        self.interval = float(context.options.get("INTERVAL", 1.0))
        self._task: asyncio.Task[None] | None = None
        self._sent = 0

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> list[str]:
        problems = []
        if not isinstance(options.get("DEVICES", 3), int) or options.get("DEVICES", 3) < 1:
            problems.append("DEVICES must be a positive integer")
        if not isinstance(options.get("INTERVAL", 1.0), int | float):
            problems.append("INTERVAL must be a number of seconds")
        return problems

    async def start(self) -> list[Listener]:
        self._task = asyncio.create_task(self._run(), name="demo-simulator")
        return [Listener("simulator", f"{self.devices} devices every {self.interval:g}s")]

    async def stop(self, timeout: float) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def health(self) -> AdapterHealth:
        running = self._task is not None and not self._task.done()
        return AdapterHealth("ok" if running else "down", f"{self._sent} readings sent")

    async def _run(self) -> None:
        layer = get_channel_layer()
        assert layer is not None, "the demo needs CHANNEL_LAYERS"
        while True:
            for n in range(1, self.devices + 1):
                await layer.group_send(GROUP, {"type": "device.reading", "reading": _reading(n)})
                self.context.metrics.inc(self.protocol, "received")
                self._sent += 1
            await asyncio.sleep(self.interval)


def _reading(n: int) -> dict[str, Any]:
    now = time.time()
    return {
        "device": f"sensor-{n}",
        "temperature": round(20 + 3 * math.sin(now / 30 + n) + random.uniform(-0.2, 0.2), 2),
        "battery": max(0, 100 - int(now / 60 + 7 * n) % 100),
        "at": round(now, 3),
    }
