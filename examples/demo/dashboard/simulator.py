"""The demo's devices: real MQTT clients, started by the gateway after its embedded broker.

Each simulated device logs in to the broker with its own credential (created here on first
start), publishes readings to ``devices/<id>/telemetry`` and obeys ``devices/<id>/commands``
(the admin's "Send a command" action); see ``gateway simulate`` for the same from a shell.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

from django_app.models.devices import Device, DeviceCredential
from gateway.adapters import AdapterContext, AdapterHealth, Listener, ProtocolAdapter
from gateway.db import database_sync_to_async
from protocol_adapters.mqtt.simulate import Simulation

logger = logging.getLogger("gateway.demo")


class DeviceSimulator(ProtocolAdapter):
    """DEVICES devices, each reporting every INTERVAL seconds to the broker at BROKER."""

    protocol = "simulator"

    def __init__(self, context: AdapterContext) -> None:
        super().__init__(context)
        options = context.options
        self.devices = int(options.get("DEVICES", 3))
        self.interval = float(options.get("INTERVAL", 1.0))
        self.simulation = Simulation(
            str(options["BROKER"]),
            devices=self.devices,
            rate=self.devices / self.interval,
            password=str(options["PASSWORD"]),
        )
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> list[str]:
        problems = []
        if not isinstance(options.get("DEVICES", 3), int) or options.get("DEVICES", 3) < 1:
            problems.append("DEVICES must be a positive integer")
        interval = options.get("INTERVAL", 1.0)
        if not isinstance(interval, int | float) or interval <= 0:
            problems.append("INTERVAL must be a positive number of seconds")
        problems += [f"{key} is required" for key in ("BROKER", "PASSWORD") if key not in options]
        return problems

    async def start(self) -> list[Listener]:
        await _provision(self.simulation.device_ids(), str(self.context.options["PASSWORD"]))
        await self.simulation.connect()
        self._task = asyncio.create_task(self.simulation.run(), name="demo-simulator")
        detail = f"{self.devices} devices every {self.interval:g}s -> {self.simulation.url}"
        return [Listener("simulator", detail)]

    async def stop(self, timeout: float) -> None:
        self.simulation.stop()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.simulation.close()

    def health(self) -> AdapterHealth:
        running = self._task is not None and not self._task.done()
        detail = f"{self.simulation.sent} readings sent, {self.simulation.commands} commands"
        return AdapterHealth("ok" if running else "down", detail)


@database_sync_to_async
def _provision(device_ids: list[str], password: str) -> None:
    """Give each simulated device a row and a credential, once."""
    for number, device_id in enumerate(device_ids, start=1):
        device, _ = Device.objects.get_or_create(
            device_id=device_id, defaults={"name": f"Simulated sensor {number}"}
        )
        credential = DeviceCredential.objects.filter(device=device).first()
        if credential is None or not credential.check_password(password):
            credential = credential or DeviceCredential(device=device)
            credential.set_password(password)
            credential.save()
            logger.info("demo: credential set for device %s", device_id)
