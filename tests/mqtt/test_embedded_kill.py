"""PUBACK after handling, proven with a process: a gateway SIGKILLed while its application
still runs leaves the QoS 1 message unacknowledged, and the publisher's resend to the
restarted gateway is handled (at least once, as with an external broker)."""

from __future__ import annotations

import sys
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.integration.support import free_port
from tests.mqtt.external_support import read_events
from tests.mqtt.test_external import wait_for
from tests.server.process import GatewayProcess, gateway_env, spawn, wait_ready

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

APP = "tests.mqtt.external_app:application"


def start_gateway(directory: Path, port: int, events: Path, **env: str) -> GatewayProcess:
    directory.mkdir()
    environment = gateway_env(directory, settings="tests.mqtt.embedded_settings")
    environment.update(MQTT_TEST_PORT=str(port), MQTT_TEST_EVENTS=str(events), **env)
    command = [sys.executable, "-m", "gateway", "run", APP]
    process = spawn(directory, env=environment, command=command)
    assert wait_ready(process), process.stderr()
    return process


def publisher(port: int) -> paho.Client:
    """A device with a persistent session: it resends unacknowledged messages on reconnect."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="kill-pub", clean_session=False)
    client.reconnect_delay_set(0.1, 0.5)
    client.connect("127.0.0.1", port, keepalive=5)
    client.loop_start()
    return client


@pytest.mark.parametrize("qos", [1, 2])
def test_a_message_in_the_app_at_sigkill_is_unacknowledged_and_resent(
    tmp_path: Path, qos: int
) -> None:
    port, events = free_port(), tmp_path / "events.log"
    first = start_gateway(tmp_path / "first", port, events, MQTT_TEST_BLOCK="1")
    client = publisher(port)
    try:
        info = client.publish("work/w1", b"payload-1", qos=qos)
        wait_for(lambda: any(row[0] == "start" for row in read_events(events)), "the app")
        assert not info.is_published()  # the application has it: no PUBACK/PUBREC yet
        first.kill()
        second = start_gateway(tmp_path / "second", port, events)
        try:
            info.wait_for_publish(30)
            assert info.is_published()  # acknowledged by the second gateway
            rows = read_events(events)
        finally:
            second.kill()
    finally:
        client.loop_stop()
        client.disconnect()
    assert ("start", first.proc.pid, "work/w1", "payload-1") in rows
    assert ("done", second.proc.pid, "work/w1", "payload-1") in rows
    assert not any(row[0] == "done" and row[1] == first.proc.pid for row in rows)
