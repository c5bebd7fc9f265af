"""`gateway simulate` against the embedded broker: real devices, commands back to them."""

from __future__ import annotations

import asyncio
import json
import signal
import sys

import pytest

from gateway import mqtt
from tests.mqtt.embedded_support import WAIT, Recorder, running_broker

pytestmark = pytest.mark.integration


async def test_simulated_devices_publish_and_receive_commands() -> None:
    app = Recorder()
    async with running_broker(app, AUTH="anonymous", SUBSCRIPTIONS=["devices/+/telemetry"]) as run:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "simulate", "--devices", "3", "--rate", "30",
            "--broker", f"mqtt://127.0.0.1:{run.port}", "--duration", "60",
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            seen: set[str] = set()
            while len(seen) < 3:
                scope, payload = await app.next()
                seen.add(scope["device_id"] or scope["client_id"])
                assert set(json.loads(payload)) >= {"temperature", "battery", "at"}
            assert seen == {"sensor-1", "sensor-2", "sensor-3"}
            await mqtt.apublish("devices/sensor-2/commands", {"interval": 5}, qos=1)
            while True:  # the device reports the last command it got in its readings
                scope, payload = await app.next()
                if json.loads(payload).get("last_command") == {"interval": 5}:
                    break
            assert scope["topic"] == "devices/sensor-2/telemetry"
        finally:
            proc.send_signal(signal.SIGINT)
            _, err = await asyncio.wait_for(proc.communicate(), WAIT)
    assert proc.returncode == 0, err.decode()
    assert "commands 1" in err.decode()
