"""The embedded broker against real clients: intake, routing, publishing back, port 0."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway import mqtt
from gateway.conf import GatewaySettings
from gateway.consumers.mqtt import AsyncJsonMqttConsumer
from gateway.server import Gateway
from routers import ProtocolTypeRouter
from routers.mqtt import MqttTopicRouter, topic
from tests.mqtt.embedded_support import (
    WAIT,
    Recorder,
    mosquitto_pub,
    mosquitto_sub,
    running_broker,
)

pytestmark = pytest.mark.integration


async def test_a_publish_reaches_the_app_in_process() -> None:
    app = Recorder()
    async with running_broker(app, AUTH="anonymous", SUBSCRIPTIONS=["devices/+/telemetry"]) as run:
        code, err = await mosquitto_pub(
            run.port, "-i", "dev-1", "-t", "devices/dev-1/telemetry", "-m", '{"t": 21}', "-q", "1"
        )
        assert code == 0, err
        scope, payload = await app.next()
        assert run.adapter.health().status == "ok"
    assert payload == b'{"t": 21}'
    assert scope["type"] == "mqtt"
    assert scope["topic"] == "devices/dev-1/telemetry"
    assert scope["subscription"] == "devices/+/telemetry"
    assert scope["qos"] == 1
    assert scope["message_id"] is not None
    assert scope["client_id"] == "dev-1"
    assert scope["device_id"] is None  # anonymous: no device authenticated
    assert scope["broker"] == "embedded"


class Echo(AsyncJsonMqttConsumer):
    """Answers each reading on the device's commands topic."""

    async def receive_json(self, data: Any) -> None:
        device = self.scope["url_route"]["kwargs"]["device_id"]
        await self.publish(f"devices/{device}/commands", {"ack": data["n"]}, qos=1)


async def test_a_routed_consumer_publishes_back_to_a_subscriber() -> None:
    app = ProtocolTypeRouter(
        {"mqtt": MqttTopicRouter([topic("devices/{device_id}/telemetry", Echo.as_asgi())])}
    )
    async with (
        running_broker(app, AUTH="anonymous", ACL=None) as run,
        mosquitto_sub(run.port, "-i", "watcher", "-t", "devices/+/commands", "-q", "1") as sub,
    ):
        assert run.adapter.filters == ["devices/+/telemetry"]  # derived from the routes
        code, err = await mosquitto_pub(
            run.port, "-i", "pump-7", "-t", "devices/pump-7/telemetry", "-m", '{"n": 5}'
        )
        assert code == 0, err
        assert await sub.message() == 'devices/pump-7/commands {"ack":5}'


async def test_apublish_from_anywhere_reaches_a_subscriber() -> None:
    async with (
        running_broker(Recorder(), AUTH="anonymous") as run,
        mosquitto_sub(run.port, "-i", "dev-2", "-t", "devices/dev-2/commands") as sub,
    ):
        await mqtt.apublish("devices/dev-2/commands", {"open": True})
        assert await sub.message() == 'devices/dev-2/commands {"open":true}'


async def test_a_burst_then_disconnect_loses_nothing() -> None:
    # What is still queued in the broker when the client disconnects is delivered too.
    app = Recorder()
    lines = "\n".join(f'{{"n": {n}}}' for n in range(40)) + "\n"
    async with running_broker(app, AUTH="anonymous", SUBSCRIPTIONS=["devices/#"]) as run:
        proc = await asyncio.create_subprocess_exec(
            "mosquitto_pub", "-p", str(run.port), "-h", "127.0.0.1", "-i", "burst",
            "-t", "devices/burst/telemetry", "-q", "1", "-l",
            stdin=asyncio.subprocess.PIPE,
        )  # fmt: skip
        await asyncio.wait_for(proc.communicate(lines.encode()), WAIT)
        assert proc.returncode == 0
        received = [(await app.next())[1] for _ in range(40)]
    assert received == [f'{{"n": {n}}}'.encode() for n in range(40)]  # all, in order


async def test_the_gateway_prints_the_real_port_of_port_0() -> None:
    settings = GatewaySettings(
        {
            "HTTP": {"ENABLED": False},
            "ADAPTERS": {
                "devices": {
                    "BACKEND": "protocol_adapters.mqtt.EmbeddedBroker",
                    "OPTIONS": {"PORT": 0, "AUTH": "anonymous"},
                }
            },
        }
    )
    gateway = Gateway(Recorder(), settings=settings)
    ready = asyncio.Event()
    serving = asyncio.create_task(gateway.serve(ready))
    await asyncio.wait_for(ready.wait(), WAIT)
    try:
        [listener] = gateway.listeners
        assert listener.protocol == "mqtt"
        host, port = listener.address.removeprefix("mqtt://").rsplit(":", 1)
        assert host == "127.0.0.1"
        assert int(port) > 0
        assert gateway.health()["adapters"]["devices"]["status"] == "ok"
    finally:
        gateway.stop()
        assert await asyncio.wait_for(serving, WAIT) == 0


def _publish_over_websocket(port: int) -> None:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="ws-dev", transport="websockets")
    client.ws_set_options(path="/")
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        client.publish("devices/ws-dev/telemetry", b"over ws", qos=1).wait_for_publish(WAIT)
    finally:
        client.disconnect()
        client.loop_stop()


async def test_mqtt_over_websocket() -> None:
    app = Recorder()
    options = {"AUTH": "anonymous", "WS_PORT": 0, "SUBSCRIPTIONS": ["devices/#"]}
    async with running_broker(app, **options) as run:
        listeners = {listener.protocol: listener.address for listener in run.listeners}
        assert listeners["mqtt-ws"].startswith("ws://127.0.0.1:")
        port = int(listeners["mqtt-ws"].rstrip("/").rsplit(":", 1)[1])
        await asyncio.to_thread(_publish_over_websocket, port)
        scope, payload = await app.next()
    assert (scope["topic"], scope["client_id"], payload) == (
        "devices/ws-dev/telemetry",
        "ws-dev",
        b"over ws",
    )


async def test_mqtt_over_tls(tmp_path: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    made = await asyncio.create_subprocess_exec(
        openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert await made.wait() == 0
    app = Recorder()
    tls = {"CERT_FILE": str(cert), "KEY_FILE": str(key), "PORT": 0}
    options = {"AUTH": "anonymous", "TLS": tls, "SUBSCRIPTIONS": ["devices/#"]}
    async with running_broker(app, **options) as run:
        listeners = {listener.protocol: listener.address for listener in run.listeners}
        port = int(listeners["mqtts"].rsplit(":", 1)[1])
        code, err = await mosquitto_pub(
            port, "--cafile", str(cert), "--insecure", "-i", "tls-dev",
            "-t", "devices/tls-dev/telemetry", "-m", "secret",
        )  # fmt: skip
        assert code == 0, err
        scope, payload = await app.next()
    assert (scope["topic"], payload) == ("devices/tls-dev/telemetry", b"secret")
