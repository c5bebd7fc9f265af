"""Attacks on the embedded broker, one test each: it must hold where a device could cheat.

Device identity comes from the login, never from the client id; authentication comes before
any session is touched; a client id held by one device stays its own; offline queues, silent
sockets and connection counts are bounded; packets MQTT 3.1.1 forbids close the connection.
The tests speak raw MQTT (tests/mqtt/raw_mqtt.py) to send what no client library would.
Where MQTT itself defines the behaviour, the test also runs against Mosquitto, the reference.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.types import MqttPublishEvent
from tests.integration.mosquitto import running_mosquitto
from tests.mqtt.device_support import fast_hashing, make_device
from tests.mqtt.embedded_support import WAIT, Recorder, RunningBroker, running_broker
from tests.mqtt.raw_mqtt import (
    Clients,
    Connack,
    RawClient,
    connect,
    encode_length,
    pingreq,
    publish,
    subscribe,
    text_field,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("fast_hashing", "sensors"),
]
__all__ = ["fast_hashing"]  # the fixture, imported for pytest

PASSWORD = "demo-device-password"
SENSORS = ("sensor-1", "sensor-2", "sensor-3")
REFUSED = 0x80  # SUBACK return code: failure
NOT_AUTHORISED = 5  # CONNACK return codes
IDENTIFIER_REJECTED = 2
VICTIM_STATES = ["connected, clean session", "connected, persistent session", "offline session"]


@pytest.fixture
async def sensors(transactional_db: None) -> None:
    for device_id in SENSORS:
        await make_device(device_id, PASSWORD)


@pytest.fixture
async def clients() -> AsyncIterator[Clients]:
    pool = Clients(strict=False)  # a delivery may come before the packet a test waits for
    yield pool
    await pool.aclose()


@pytest.fixture(params=["embedded", "mosquitto"])
async def reference_port(request: pytest.FixtureRequest) -> AsyncIterator[int]:
    """The port of our broker, or of Mosquitto to prove the expectation (anonymous there)."""
    if request.param == "mosquitto":
        with running_mosquitto(0, "max_packet_size 70000") as mosquitto:
            yield mosquitto.port
        return
    async with running_broker(Recorder(), MAX_PAYLOAD=1024) as run:
        yield run.port


async def login(
    clients: Clients,
    port: int,
    client_id: str,
    device: str,
    *,
    clean: bool = True,
    local_host: str | None = None,
) -> RawClient:
    """A raw client logged in as `device` (its CONNACK in `client.connack`)."""
    client = await clients.open(port, local_host=local_host)
    connack = await client.connect(client_id, username=device, password=PASSWORD, clean=clean)
    assert connack.return_code == 0, f"{device} could not log in as {client_id!r}: {connack}"
    return client


async def command(run: RunningBroker, device: str, payload: bytes) -> None:
    """The application publishes a QoS 1 command to `device`."""
    topic = f"devices/{device}/commands"
    event: MqttPublishEvent = {"type": "mqtt.publish", "topic": topic, "payload": payload, "qos": 1}
    await run.adapter.publish(event)


# --- 1. the ACL follows the login, not the client id or the session -------------------------


@pytest.mark.parametrize("first", ["still connected", "disconnected"])
async def test_a_second_connection_with_the_same_client_id_is_held_to_the_acl(
    first: str, clients: Clients
) -> None:
    app = Recorder()
    async with running_broker(app, SUBSCRIPTIONS=["devices/#"]) as run:
        watcher = await login(clients, run.port, "sensor-2-watch", "sensor-2")
        assert await watcher.subscribe(("devices/sensor-2/#", 1)) == [1]
        one = await login(clients, run.port, "rt-x", "sensor-1", clean=False)
        assert await one.subscribe(("devices/sensor-1/#", 1)) == [1]
        if first == "disconnected":
            await one.disconnect()
        two = await login(clients, run.port, "rt-x", "sensor-1", clean=False)
        if first == "still connected":
            assert await one.closed()  # taken over by the same login (MQTT-3.1.4-2)
        rejected = run.metrics.get("mqtt", "rejected")
        await two.publish("devices/sensor-2/commands", b"forged", qos=1)  # PUBACKed, dropped
        await two.publish("devices/sensor-1/telemetry", b"control", qos=1)
        scope, payload = await app.next()
        assert (scope["topic"], payload) == ("devices/sensor-1/telemetry", b"control")
        await watcher.publish("devices/sensor-2/commands", b"control")
        received = await watcher.message()
        assert (received.topic, received.payload) == ("devices/sensor-2/commands", b"control")
        assert await watcher.messages_within(0.5) == []
        assert run.metrics.get("mqtt", "rejected") == rejected + 1
        assert await two.subscribe(("#", 1), packet_id=2) == [REFUSED]
        assert await two.subscribe(("devices/sensor-2/#", 1), packet_id=3) == [REFUSED]


# --- 2 and 3. a refused CONNECT touches no session; a client id stays its device's ----------


async def start_victim(clients: Clients, port: int, device: str, state: str) -> RawClient:
    """`device` connected as client id `device` and subscribed to its commands, in `state`."""
    victim = await login(clients, port, device, device, clean=state.endswith("clean session"))
    assert await victim.subscribe((f"devices/{device}/commands", 1)) == [1]
    if state == "offline session":
        await victim.disconnect()
    return victim


async def assert_victim_served(
    clients: Clients, run: RunningBroker, device: str, state: str, victim: RawClient
) -> None:
    """The victim still gets its commands: on its connection, or queued in its session."""
    await command(run, device, b"on")
    if state == "offline session":
        victim = await login(clients, run.port, device, device, clean=False)
        assert victim.connack == Connack(session_present=True, return_code=0)
    received = await victim.message()
    assert (received.topic, received.payload) == (f"devices/{device}/commands", b"on")
    await victim.ping()


@pytest.mark.parametrize("state", VICTIM_STATES)
@pytest.mark.parametrize("intruder_clean", [True, False], ids=["clean", "persistent"])
@pytest.mark.parametrize(
    "credentials",
    [("sensor-3", "guess"), (None, None)],
    ids=["wrong password", "no login"],
)
async def test_a_refused_connect_leaves_the_client_with_that_id_alone(
    state: str, intruder_clean: bool, credentials: tuple[str | None, str | None], clients: Clients
) -> None:
    async with running_broker(Recorder()) as run:
        victim = await start_victim(clients, run.port, "sensor-3", state)
        intruder = await clients.open(run.port)
        username, password = credentials
        connack = await intruder.connect(
            "sensor-3", username=username, password=password, clean=intruder_clean
        )
        assert connack == Connack(session_present=False, return_code=NOT_AUTHORISED)
        assert await intruder.closed()
        await assert_victim_served(clients, run, "sensor-3", state, victim)


@pytest.mark.parametrize("state", VICTIM_STATES)
@pytest.mark.parametrize("intruder_clean", [True, False], ids=["clean", "persistent"])
async def test_another_device_cannot_take_over_a_client_id(
    state: str, intruder_clean: bool, clients: Clients
) -> None:
    async with running_broker(Recorder()) as run:
        victim = await start_victim(clients, run.port, "sensor-2", state)
        intruder = await clients.open(run.port)
        connack = await intruder.connect(
            "sensor-2", username="sensor-1", password=PASSWORD, clean=intruder_clean
        )
        assert connack == Connack(session_present=False, return_code=IDENTIFIER_REJECTED)
        assert await intruder.closed()
        await assert_victim_served(clients, run, "sensor-2", state, victim)


async def test_a_client_id_nobody_holds_is_free_for_any_device(clients: Clients) -> None:
    async with running_broker(Recorder()) as run:
        first = await login(clients, run.port, "shared-board", "sensor-2")
        await first.disconnect()  # clean session: nothing of it is left
        second = await login(clients, run.port, "shared-board", "sensor-1")
        assert await second.subscribe(("devices/sensor-1/#", 1)) == [1]


async def test_the_same_login_takes_its_client_id_over(
    reference_port: int, clients: Clients
) -> None:
    first = await login(clients, reference_port, "sensor-1-board", "sensor-1")
    second = await login(clients, reference_port, "sensor-1-board", "sensor-1")
    assert await first.closed()  # MQTT-3.1.4-2
    assert await second.subscribe(("devices/sensor-1/#", 1)) == [1]
    await second.publish("devices/sensor-1/telemetry", b"still here")
    assert (await second.message()).payload == b"still here"


# --- 4. offline queues are bounded, sessions expire --------------------------------------------


async def offline_subscriber(clients: Clients, run: RunningBroker) -> None:
    """sensor-1's persistent session "q-1", subscribed at QoS 1 to its commands, offline."""
    client = await login(clients, run.port, "q-1", "sensor-1", clean=False)
    assert await client.subscribe(("devices/sensor-1/commands", 1)) == [1]
    await client.disconnect()


async def payloads_after_reconnect(clients: Clients, run: RunningBroker) -> list[bytes]:
    """What session "q-1" had queued: every message before a control sent after reconnecting."""
    client = await login(clients, run.port, "q-1", "sensor-1", clean=False)
    assert client.connack == Connack(session_present=True, return_code=0)
    await command(run, "sensor-1", b"control")
    payloads = []
    while (payload := (await client.message()).payload) != b"control":
        payloads.append(payload)
    return payloads


async def test_an_offline_queue_keeps_the_newest_max_queued_messages(
    clients: Clients, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="gateway.mqtt")
    async with running_broker(Recorder(), MAX_QUEUED_MESSAGES=10) as run:
        await offline_subscriber(clients, run)
        for n in range(25):
            await command(run, "sensor-1", b"%d" % n)
        assert await payloads_after_reconnect(clients, run) == [b"%d" % n for n in range(15, 25)]
        assert run.metrics.get("mqtt", "dropped") == 15
    warnings = [r for r in caplog.records if r.name == "gateway.mqtt"]
    assert any(r.levelno == logging.WARNING for r in warnings), "no warning for the drops"


async def test_an_offline_queue_keeps_the_newest_max_queued_bytes(clients: Clients) -> None:
    # 1000-byte payloads against 5500 bytes: five fit, also if topics and headers count.
    async with running_broker(Recorder(), MAX_QUEUED_BYTES=5500) as run:
        await offline_subscriber(clients, run)
        sent = [b"%04d" % n * 250 for n in range(25)]
        for payload in sent:
            await command(run, "sensor-1", payload)
        assert await payloads_after_reconnect(clients, run) == sent[-5:]
        assert run.metrics.get("mqtt", "dropped") == 20


async def test_an_offline_session_expires_after_session_expiry(clients: Clients) -> None:
    async with running_broker(Recorder(), SESSION_EXPIRY=1) as run:
        await offline_subscriber(clients, run)
        await command(run, "sensor-1", b"stale")  # queued, then gone with the session
        await asyncio.sleep(2.0)
        client = await login(clients, run.port, "q-1", "sensor-1", clean=False)
        assert client.connack == Connack(session_present=False, return_code=0)
        assert await client.subscribe(("devices/sensor-1/commands", 1)) == [1]
        await command(run, "sensor-1", b"control")
        assert (await client.message()).payload == b"control"


# --- 5. silent sockets and connection counts ---------------------------------------------------


async def trickle(client: RawClient, data: bytes, interval: float) -> None:
    """Send `data` one byte every `interval` seconds, until done or the broker hangs up."""
    with contextlib.suppress(ConnectionError):
        for index in range(len(data)):
            await client.send(data[index : index + 1])
            await asyncio.sleep(interval)


async def test_a_socket_without_a_complete_connect_is_closed(clients: Clients) -> None:
    whole = connect("sensor-1-slow", username="sensor-1", password=PASSWORD)
    async with running_broker(Recorder(), CONNECT_TIMEOUT=0.5) as run:
        silent = await clients.open(run.port)
        half = await clients.open(run.port)
        await half.send(whole[: len(whole) // 2])
        slow = await clients.open(run.port)
        sending = asyncio.create_task(trickle(slow, whole, 0.1))  # active, never done in time
        prompt = await login(clients, run.port, "sensor-1-board", "sensor-1")
        try:
            assert await silent.closed(5.0)
            assert await half.closed(5.0)
            assert await slow.closed(3.0)
        finally:
            sending.cancel()
        await prompt.ping()  # a client that did connect in time stays connected


async def login_when_free(clients: Clients, port: int, client_id: str) -> RawClient:
    """Log in once the broker has let go of a closed connection's place."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while True:
        with contextlib.suppress(ConnectionError):  # refused, reset or closed (ConnectionClosed)
            return await login(clients, port, client_id, "sensor-1")
        assert loop.time() < deadline, "a closed connection still counts against the cap"
        await asyncio.sleep(0.05)


async def test_connections_past_max_connections_per_address_are_closed(clients: Clients) -> None:
    async with running_broker(Recorder(), MAX_CONNECTIONS_PER_ADDRESS=3) as run:
        held = [await login(clients, run.port, f"cap-{n}", "sensor-1") for n in range(3)]
        extra = await clients.open(run.port)
        assert await extra.closed(2.0)
        for client in held:
            await client.ping()
        elsewhere = await login(clients, run.port, "cap-other", "sensor-1", local_host="127.0.0.2")
        await elsewhere.ping()  # another address counts on its own
        await held[0].disconnect()
        await (await login_when_free(clients, run.port, "cap-again")).ping()


async def test_connections_past_max_connections_are_closed(clients: Clients) -> None:
    async with running_broker(Recorder(), MAX_CONNECTIONS=3) as run:
        hosts = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
        held = [
            await login(clients, run.port, f"cap-{n}", "sensor-1", local_host=host)
            for n, host in enumerate(hosts)
        ]
        extra = await clients.open(run.port, local_host="127.0.0.4")
        assert await extra.closed(2.0)
        for client in held:
            await client.ping()
        await held[0].disconnect()
        await (await login_when_free(clients, run.port, "cap-again")).ping()


# --- 6. packets MQTT 3.1.1 forbids close the connection ---------------------------------------

LOGIN: dict[str, Any] = {"username": "sensor-1", "password": PASSWORD}
TOPIC = "devices/sensor-1/telemetry"
INVALID_PACKETS: dict[str, tuple[bool, bytes]] = {
    # name: (sent after a successful CONNECT?, the bytes)
    "PUBLISH before CONNECT": (False, publish(TOPIC, b"x")),
    "SUBSCRIBE before CONNECT": (False, subscribe(1, [("devices/sensor-1/#", 0)])),
    "PINGREQ before CONNECT": (False, pingreq()),
    "a second CONNECT": (True, connect("sensor-1-bad", **LOGIN)),  # MQTT-3.1.0-2
    "QoS 3 PUBLISH": (True, publish(TOPIC, b"x", qos=3)),  # MQTT-3.3.1-4
    "NUL in a topic": (True, publish("devices/sensor-1/a\x00b", b"x")),  # MQTT-1.5.3-2
    "invalid UTF-8 in a topic": (True, publish(b"devices/sensor-1/\xc3\x28", b"x")),
    "NUL in a client id": (False, connect("sensor-1\x00bad", **LOGIN)),
    "invalid UTF-8 in a client id": (False, connect(b"sensor-1-\xff", **LOGIN)),
    "+ in a PUBLISH topic": (True, publish("devices/sensor-1/+", b"x")),  # MQTT-3.3.2-2
    "# in a PUBLISH topic": (True, publish("devices/sensor-1/#", b"x")),
    # The value is 1, in five bytes: four with the continuation bit, one more than MQTT allows.
    "a 5-byte remaining length": (True, b"\x30\x81\x80\x80\x80\x00" + b"\x00" * 8),
    "an oversize PUBLISH": (
        True,
        b"\x30" + encode_length(1_000_000) + text_field(TOPIC) + b"x" * 8192,
    ),
}


async def assert_serves_a_device(clients: Clients, port: int) -> None:
    device = await login(clients, port, "sensor-1-good", "sensor-1")
    assert await device.subscribe(("devices/sensor-1/#", 1)) == [1]
    await device.publish(TOPIC, b"fine", qos=1)
    received = await device.message()
    assert (received.topic, received.payload) == (TOPIC, b"fine")


@pytest.mark.parametrize("case", list(INVALID_PACKETS))
async def test_an_invalid_packet_closes_the_connection(
    case: str, reference_port: int, clients: Clients
) -> None:
    after_connect, data = INVALID_PACKETS[case]
    if after_connect:
        client = await login(clients, reference_port, "sensor-1-bad", "sensor-1")
    else:
        client = await clients.open(reference_port)
    with contextlib.suppress(ConnectionError):  # the broker may hang up while we still send
        await client.send(data)
    assert await client.closed(5.0), f"the broker kept the connection open after {case}"
    await assert_serves_a_device(clients, reference_port)
