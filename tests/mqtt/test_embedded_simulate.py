"""`gateway simulate` against the embedded broker: real devices, commands back to them."""

from __future__ import annotations

import asyncio
import json
import signal
import sys

import pytest

from django_app.models.devices import Device
from gateway import mqtt
from gateway.db import database_sync_to_async
from tests.mqtt.embedded_support import WAIT, Recorder, running_broker

pytestmark = pytest.mark.integration


async def test_simulated_devices_publish_and_receive_commands() -> None:
    app = Recorder()
    async with running_broker(app, AUTH="anonymous", SUBSCRIPTIONS=["devices/+/telemetry"]) as run:
        proc = await _start_simulate(run.port, "--devices", "3", "--rate", "30")
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


@pytest.mark.django_db(transaction=True)
async def test_a_simulated_device_answers_a_request() -> None:
    """The demo's devices answer `gateway.mqtt.request`, so the admin's wait shows answers."""
    await database_sync_to_async(Device.objects.create)(device_id="sensor-1")
    app = Recorder()
    async with running_broker(app, AUTH="anonymous", COMMANDS=True) as run:
        proc = await _start_simulate(run.port, "--devices", "1", "--rate", "1")
        try:
            await app.next()  # its status message: connected and subscribed
            answer = await mqtt.arequest("sensor-1", "led/blink", {"times": 3}, timeout=10)
        finally:
            proc.send_signal(signal.SIGINT)
            await asyncio.wait_for(proc.communicate(), WAIT)
    assert answer.json() == {"device": "sensor-1", "command": "led/blink", "ok": True}


async def _start_simulate(port: int, *args: str) -> asyncio.subprocess.Process:
    """`gateway simulate` against 127.0.0.1:`port` for at most a minute; stderr piped."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "simulate", "--broker", f"mqtt://127.0.0.1:{port}",
        "--duration", "60", *args, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def _simulate(port: int, *args: str) -> tuple[int | None, str]:
    """Run `gateway simulate` to its end (WAIT turns a hang into a failure): code, stderr."""
    proc = await _start_simulate(port, "--rate", "5", *args)
    try:
        _, err = await asyncio.wait_for(proc.communicate(), WAIT)
    except TimeoutError:
        proc.kill()
        _, err = await proc.communicate()
        raise AssertionError(f"gateway simulate hung: {err.decode()}") from None
    return proc.returncode, err.decode()


@pytest.mark.django_db(transaction=True)
async def test_a_wrong_password_is_reported_with_the_connack_reason() -> None:
    async with running_broker(Recorder(), AUTH="devices") as run:
        code, err = await _simulate(run.port, "--devices", "2", "--password", "wrong")
    assert code == 1
    assert "sensor-1 could not connect" in err
    assert "refused by the broker: CONNACK code 5 (Connection Refused: not authorised)" in err
    assert "(0 of 2 devices connected)" in err


async def test_a_connection_the_broker_closes_before_its_connack_is_reported() -> None:
    # The embedded broker's per-address cap closes the third connection without a CONNACK.
    options = {"AUTH": "anonymous", "MAX_CONNECTIONS_PER_ADDRESS": 2}
    async with running_broker(Recorder(), **options) as run:
        code, err = await _simulate(run.port, "--devices", "3")
    assert code == 1
    assert "sensor-3 could not connect" in err
    assert "closed the connection before its CONNACK" in err, err
    assert "(2 of 3 devices connected)" in err


async def test_a_broker_that_never_answers_is_reported_after_the_connect_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # reads the CONNECT, answers nothing

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        code, err = await _simulate(port, "--devices", "1", "--connect-timeout", "0.5")
    assert code == 1
    assert "sensor-1 could not connect" in err
    assert "no CONNACK within 0.5s" in err, err
