"""The external-broker adapter against a real Mosquitto started by the test."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway import AsyncJsonMqttConsumer, AsyncMqttConsumer, MqttTopicRouter, ProtocolTypeRouter
from gateway.mqtt import apublish
from gateway.pipeline import DeadLetter
from gateway.server import Gateway
from gateway.types import ASGIApp
from protocol_adapters.mqtt.external import ExternalBroker
from routers import topic
from tests.integration.mosquitto import Mosquitto, free_port, running_mosquitto
from tests.mqtt.external_support import (
    WAIT,
    Subscriber,
    adapter_of,
    eventually,
    mosquitto_pub,
    read_events,
    running_gateway,
    settings_for,
    start_gateway_process,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    with running_mosquitto() as started:
        yield started


def telemetry_app(seen: list[tuple[dict[str, Any], Any]]) -> ASGIApp:
    class Telemetry(AsyncJsonMqttConsumer):
        async def receive_json(self, data: Any) -> None:
            seen.append((dict(self.scope), data))
            if "reply" in data:
                await self.publish(
                    f"devices/{self.scope['url_route']['kwargs']['device_id']}/ack", data
                )

    return ProtocolTypeRouter(
        {"mqtt": MqttTopicRouter([topic("devices/{device_id}/telemetry", Telemetry.as_asgi())])}
    )


async def test_message_reaches_routed_consumer_with_scope(broker: Mosquitto) -> None:
    seen: list[tuple[dict[str, Any], Any]] = []
    async with running_gateway(telemetry_app(seen), settings_for(broker)) as gateway:
        health = adapter_of(gateway).health()
        assert health.status == "ok"
        assert "1 subscriptions" in health.detail
        await mosquitto_pub(broker, "devices/d-7/telemetry", '{"t": 21.5}', "-D", "publish",
                            "content-type", "application/json", "-V", "mqttv5")  # fmt: skip
        await eventually(lambda: bool(seen), "the consumer to run")
    scope, data = seen[0]
    assert data == {"t": 21.5}
    assert scope["topic"] == "devices/d-7/telemetry"
    assert scope["qos"] == 1
    assert isinstance(scope["message_id"], int)
    assert scope["dup"] is False
    assert scope["broker"] == "external"
    assert scope["adapter"] == "broker"
    assert scope["url_route"]["kwargs"] == {"device_id": "d-7"}
    assert scope["subscription"] == "devices/+/telemetry"
    assert scope["properties"]["content_type"] == "application/json"


async def test_consumer_reply_reaches_mosquitto_sub(broker: Mosquitto) -> None:
    seen: list[tuple[dict[str, Any], Any]] = []
    async with running_gateway(telemetry_app(seen), settings_for(broker)):
        sub = await Subscriber.start(broker, "devices/+/ack")
        try:
            await mosquitto_pub(broker, "devices/d-1/telemetry", '{"reply": 1}')
            assert await sub.message() == b'devices/d-1/ack {"reply":1}'
        finally:
            await sub.close()


async def test_apublish_from_outside_a_consumer_reaches_the_broker(broker: Mosquitto) -> None:
    async with running_gateway(telemetry_app([]), settings_for(broker)):
        sub = await Subscriber.start(broker, "commands/#")
        try:
            await apublish("commands/d-2", {"reboot": True}, qos=1)
            assert await sub.message() == b'commands/d-2 {"reboot":true}'
        finally:
            await sub.close()


async def test_publish_carries_qos_retain_and_mqtt5_properties(broker: Mosquitto) -> None:
    fmt = ("-V", "mqttv5", "-F", "%t %q %r %C %P %p")
    async with running_gateway(telemetry_app([]), settings_for(broker)):
        live = await Subscriber.start(broker, "commands/#", *fmt)
        properties = {"content_type": "text/plain", "user_properties": [["k", "v"]]}
        await apublish("commands/d-3", "hello", qos=1, retain=True, properties=properties)
        # A subscriber from before sees it live; one from after gets the retained copy.
        later = None
        try:
            assert await live.message() == b"commands/d-3 1 0 text/plain k:v hello"
            later = await Subscriber.start(broker, "commands/#", *fmt)
            assert await later.message() == b"commands/d-3 1 1 text/plain k:v hello"
        finally:
            await live.close()
            if later is not None:
                await later.close()


async def test_failing_consumer_is_dead_lettered_and_intake_continues(broker: Mosquitto) -> None:
    letters: list[DeadLetter] = []
    calls: list[str] = []

    async def record(letter: DeadLetter) -> None:
        letters.append(letter)

    class Broken(AsyncMqttConsumer):
        async def receive(self, payload: bytes) -> None:
            calls.append(self.topic)
            raise RuntimeError(f"cannot handle {payload!r}")

    app = ProtocolTypeRouter({"mqtt": MqttTopicRouter([topic("jobs/{n}", Broken.as_asgi())])})
    async with running_gateway(app, settings_for(broker, record)):
        for n in range(3):
            await mosquitto_pub(broker, f"jobs/{n}", f"job {n}")
        await eventually(lambda: len(letters) == 3, "three dead letters")
    assert sorted(letter.key for letter in letters) == ["jobs/0", "jobs/1", "jobs/2"]
    assert all(letter.attempts == 2 and "RuntimeError" in letter.error for letter in letters)
    assert sorted(calls) == sorted([f"jobs/{n}" for n in range(3)] * 2)


async def test_bad_json_and_non_utf8_are_dead_lettered(broker: Mosquitto) -> None:
    letters: list[DeadLetter] = []
    seen: list[tuple[dict[str, Any], Any]] = []

    async def record(letter: DeadLetter) -> None:
        letters.append(letter)

    async with running_gateway(telemetry_app(seen), settings_for(broker, record)):
        await mosquitto_pub(broker, "devices/a/telemetry", "{not json")
        await mosquitto_pub(broker, "devices/b/telemetry", b"\xff\xfe\x00")
        await mosquitto_pub(broker, "devices/c/telemetry", '{"ok": true}')
        await eventually(lambda: len(letters) == 2 and len(seen) == 1, "two letters, one message")
    assert {letter.payload for letter in letters} == {b"{not json", b"\xff\xfe\x00"}
    assert all(letter.attempts == 1 for letter in letters)  # InvalidPayload is never retried
    assert seen[0][1] == {"ok": True}


async def test_reconnects_and_resubscribes_after_broker_killed(broker: Mosquitto) -> None:
    seen: list[tuple[dict[str, Any], Any]] = []
    async with running_gateway(telemetry_app(seen), settings_for(broker)) as gateway:
        adapter = adapter_of(gateway)
        broker.kill()
        # The broker forgets every session: only a resubscribe brings messages back.
        for path in broker.directory.glob("*.db"):
            path.unlink()
        await eventually(lambda: adapter.health().status == "degraded", "degraded health")
        assert "disconnected" in adapter.health().detail
        broker.start()
        await eventually(lambda: adapter.health().status == "ok", "a reconnection")
        assert "1 reconnects" in adapter.health().detail
        await mosquitto_pub(broker, "devices/r/telemetry", '{"after": "restart"}')
        await eventually(lambda: bool(seen), "the message after the restart")
    assert seen[0][1] == {"after": "restart"}


async def test_qos1_published_during_outage_by_persistent_publisher_arrive(
    broker: Mosquitto,
) -> None:
    paho = pytest.importorskip("paho.mqtt.client")
    seen: list[tuple[dict[str, Any], Any]] = []
    publisher = paho.Client(
        paho.CallbackAPIVersion.VERSION2, client_id="persistent-publisher", clean_session=False
    )
    publisher.reconnect_delay_set(0.05, 0.2)
    publisher.connect("127.0.0.1", broker.port)
    publisher.loop_start()
    try:
        async with running_gateway(telemetry_app(seen), settings_for(broker)) as gateway:
            adapter = adapter_of(gateway)
            publisher.publish("devices/p/telemetry", json.dumps({"n": 0}), qos=1).wait_for_publish(
                10
            )
            await eventually(lambda: len(seen) == 1, "the first message")
            broker.stop()  # SIGTERM: sessions are saved and come back with the broker
            await eventually(lambda: adapter.health().status == "degraded", "degraded health")
            for n in range(1, 6):
                publisher.publish("devices/p/telemetry", json.dumps({"n": n}), qos=1)
            broker.start()

            # At least once: n=0 comes again if its PUBACK was still on the way at the stop.
            def received() -> set[int]:
                return {data["n"] for _, data in seen}

            await eventually(lambda: received() == set(range(6)), "the outage's messages")
    finally:
        publisher.loop_stop()
        publisher.disconnect()
    assert sorted({data["n"] for _, data in seen}) == list(range(6))
    counts = Counter(data["n"] for _, data in seen)
    assert all(counts[n] == 1 for n in range(1, 6))  # only n=0 may come twice


def test_check_options_reports_every_mistake() -> None:
    errors = ExternalBroker.check_options(
        {"URL": "http://x", "PROTOCOL": 4, "SHARED_GROUP": "a/b", "QOS": 3, "NOPE": 1}
    )
    text = "\n".join(errors)
    for key in ("URL", "PROTOCOL", "SHARED_GROUP", "QOS", "NOPE"):
        assert f'OPTIONS["{key}"]' in text, key
    assert (
        ExternalBroker.check_options({"URL": "mqtts://u:p@broker:8883", "PROTOCOL": "3.1.1"}) == []
    )


async def test_unreachable_broker_starts_degraded_and_connects_later(broker: Mosquitto) -> None:
    seen: list[tuple[dict[str, Any], Any]] = []
    broker.stop()
    async with running_gateway(telemetry_app(seen), settings_for(broker)) as gateway:
        adapter = adapter_of(gateway)
        assert adapter.health().status == "degraded"
        broker.start()
        await eventually(lambda: adapter.health().status == "ok", "the first connection")
        await mosquitto_pub(broker, "devices/late/telemetry", "{}")
        await eventually(lambda: bool(seen), "a message")
    assert seen[0][0]["topic"] == "devices/late/telemetry"


@pytest.mark.e2e
@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_qos1_unacknowledged_while_app_runs_is_redelivered_after_sigkill(
    broker: Mosquitto, tmp_path: Path, protocol: str
) -> None:
    events = tmp_path / "events.log"
    env = {"MQTT_TEST_CLIENT_ID": "redelivery-gw", "MQTT_TEST_PROTOCOL": protocol}
    first = start_gateway_process(tmp_path / "first", broker, events, MQTT_TEST_BLOCK="1", **env)
    try:
        asyncio.run(mosquitto_pub(broker, "work/w1", "payload-1"))
        wait_for(lambda: any(row[0] == "start" for row in read_events(events)), "the app to start")
    finally:
        first.kill()  # SIGKILL while the app still runs: nothing was acknowledged
    second = start_gateway_process(tmp_path / "second", broker, events, **env)
    try:
        wait_for(lambda: any(row[0] == "done" for row in read_events(events)), "the redelivery")
    finally:
        second.kill()
    rows = read_events(events)
    assert ("start", first.proc.pid, "work/w1", "payload-1") in rows
    assert ("done", second.proc.pid, "work/w1", "payload-1") in rows
    assert not any(row[0] == "done" and row[1] == first.proc.pid for row in rows)


def wait_for(check: Callable[[], bool], what: str) -> None:
    """Poll `check` for up to WAIT seconds (a hang guard, not a timing assertion)."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def test_refused_login_fails_the_start() -> None:
    with running_mosquitto(0, "allow_anonymous false") as locked:
        gateway = Gateway(telemetry_app([]), settings=settings_for(locked), port=0)
        assert await asyncio.wait_for(gateway.serve(), WAIT) == 1


async def test_stop_finishes_accepted_messages_and_leaves_new_ones_to_the_broker(
    broker: Mosquitto,
) -> None:
    first_seen: list[bytes] = []
    release = asyncio.Event()

    class Slow(AsyncMqttConsumer):
        async def receive(self, payload: bytes) -> None:
            first_seen.append(payload)
            await release.wait()

    slow = ProtocolTypeRouter({"mqtt": MqttTopicRouter([topic("work/{item}", Slow.as_asgi())])})
    settings = settings_for(broker, CLIENT_ID="stopping-gw")
    async with running_gateway(slow, settings) as gateway:
        adapter = adapter_of(gateway)
        await mosquitto_pub(broker, "work/a", "m1")
        await eventually(lambda: first_seen == [b"m1"], "the first message to start")
        gateway.stop()
        await eventually(lambda: adapter._stopping.is_set(), "the adapter to stop intake")
        await mosquitto_pub(broker, "work/a", "m2")
        release.set()  # m1 finishes within SHUTDOWN_TIMEOUT and is acknowledged
    assert first_seen == [b"m1"]  # m2 never reached the stopping gateway's application

    later: list[bytes] = []

    class Record(AsyncMqttConsumer):
        async def receive(self, payload: bytes) -> None:
            later.append(payload)

    record = ProtocolTypeRouter({"mqtt": MqttTopicRouter([topic("work/{item}", Record.as_asgi())])})
    async with running_gateway(record, settings):
        await mosquitto_pub(broker, "work/a", "m3")
        await eventually(lambda: b"m3" in later, "the message after the restart")
    assert later == [b"m2", b"m3"]  # m2 kept by the broker; m1 was acknowledged


async def test_flood_faster_than_the_app_stays_bounded(tmp_path: Path) -> None:
    handled: list[bytes] = []
    peak = {"buffered": 0, "in_flight": 0}

    class Slowish(AsyncMqttConsumer):
        async def receive(self, payload: bytes) -> None:
            await asyncio.sleep(0.001)
            handled.append(payload)

    app = ProtocolTypeRouter({"mqtt": MqttTopicRouter([topic("flood/{n}", Slowish.as_asgi())])})
    topics, per_topic, size = 8, 1000, 100
    lines = "".join(f"{n:0{size}d}\n" for n in range(per_topic)).encode()
    # MQTT 3.1.1 and no broker-side window: only the gateway's own backpressure bounds this.
    with running_mosquitto(0) as unlimited:
        settings = settings_for(unlimited, PROTOCOL="3.1.1", MAX_IN_FLIGHT=5)
        async with running_gateway(app, settings) as gateway:
            adapter = adapter_of(gateway)
            intake = adapter._intake
            assert intake is not None

            async def watch() -> None:
                while True:
                    peak["buffered"] = max(peak["buffered"], adapter.buffered)
                    peak["in_flight"] = max(peak["in_flight"], intake.in_flight)
                    await asyncio.sleep(0)

            watcher = asyncio.create_task(watch())
            await asyncio.gather(
                *(mosquitto_pub(unlimited, f"flood/{n}", lines, lines=True) for n in range(topics))
            )
            await eventually(lambda: len(handled) == topics * per_topic, "every message")
            watcher.cancel()
    assert peak["in_flight"] <= 5
    # Parked while the intake was full, but only what was read before the socket paused:
    # gmqtt's 64 KiB read plus the stream's 128 KiB buffer, far from the 880 KB sent.
    assert 0 < peak["buffered"] * (size + 12) < 300_000
    assert Counter(handled) == Counter(dict.fromkeys(lines.splitlines(), topics))


async def test_qos2_is_handled_once_and_completed(broker: Mosquitto) -> None:
    seen: list[tuple[dict[str, Any], Any]] = []
    settings = settings_for(broker, CLIENT_ID="qos2-gw", QOS=2)
    async with running_gateway(telemetry_app(seen), settings):
        await mosquitto_pub(broker, "devices/q/telemetry", '{"n": 1}', qos=2)
        await eventually(lambda: len(seen) == 1, "the QoS 2 message")
    assert seen[0][0]["qos"] == 2
    # Same session again: had PUBREC not gone out, the broker would deliver n=1 again first.
    async with running_gateway(telemetry_app(seen), settings):
        await mosquitto_pub(broker, "devices/q/telemetry", '{"n": 2}', qos=2)
        await eventually(lambda: len(seen) == 2, "the fence message")
    assert [data["n"] for _, data in seen] == [1, 2]


def self_signed(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost"),
            *("-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_connects_over_tls_with_a_ca_file(tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = self_signed(tmp_path)
    tls_port = free_port()
    tls_listener = [f"listener {tls_port} 127.0.0.1", f"certfile {cert}", f"keyfile {key}"]
    seen: list[tuple[dict[str, Any], Any]] = []
    with running_mosquitto(0, *tls_listener) as broker:
        settings = settings_for(
            broker, URL=f"mqtts://127.0.0.1:{tls_port}", TLS={"CA_FILE": str(cert)}
        )
        async with running_gateway(telemetry_app(seen), settings) as gateway:
            assert adapter_of(gateway).health().detail.startswith("connected to mqtts://")
            await mosquitto_pub(broker, "devices/tls/telemetry", '{"secure": true}')
            await eventually(lambda: bool(seen), "a message over TLS")
    assert seen[0][1] == {"secure": True}


def test_a_gmqtt_outside_the_tested_range_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from protocol_adapters.mqtt import _compat_gmqtt

    monkeypatch.setattr(_compat_gmqtt, "version", lambda name: "0.9.0")
    [error] = ExternalBroker.check_options({"URL": "mqtt://127.0.0.1:1883"})
    assert "gmqtt 0.9.0 is installed" in error
    assert "gmqtt>=0.8,<0.9" in error
    monkeypatch.setattr(_compat_gmqtt, "version", lambda name: "0.8.3")
    assert ExternalBroker.check_options({"URL": "mqtt://127.0.0.1:1883"}) == []
