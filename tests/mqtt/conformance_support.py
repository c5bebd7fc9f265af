"""The two brokers of the conformance suite, started alike, and a paho client for async tests.

`serving(kind, devices=...)` starts the embedded broker or a throw-away Mosquitto, either open
to anonymous clients with no topic ACL, or with the three demo devices and the per-device ACL
(``devices/<username>/#``) the embedded broker enforces by default.
"""

from __future__ import annotations

import asyncio
import queue
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import ExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from tests.integration.mosquitto import Mosquitto, running_mosquitto
from tests.integration.support import not_installed
from tests.mqtt.raw_mqtt import WAIT

__all__ = [
    "DEVICES",
    "KINDS",
    "PASSWORD",
    "Broker",
    "BrokerKind",
    "PahoClient",
    "paho_client",
    "running_mosquitto_with_devices",
    "serving",
]

BrokerKind = Literal["embedded", "mosquitto"]
KINDS: tuple[BrokerKind, ...] = ("embedded", "mosquitto")
DEVICES = ("sensor-1", "sensor-2", "sensor-3")
PASSWORD = "demo-device-password"
DEVICE_ACL = "pattern readwrite devices/%u/#"  # Mosquitto's spelling of devices/{device_id}/#
# Mosquitto 2.0 defaults this to false: for MQTT 3.1.1 it then sends a message matching several
# of a client's filters once, at the QoS of the first filter it finds, not the highest, which
# breaks MQTT-3.3.5-1. Later versions default to true (one copy per filter), as here.
MOSQUITTO_CONFIG = ("allow_duplicate_messages true",)

T = TypeVar("T")


@dataclass(frozen=True)
class Broker:
    """A started broker under test."""

    kind: BrokerKind
    port: int
    host: str = "127.0.0.1"


@asynccontextmanager
async def serving(kind: BrokerKind, *, devices: bool = False) -> AsyncIterator[Broker]:
    """A broker of `kind`: anonymous with no ACL, or with `DEVICES` and the per-device ACL."""
    started = _embedded(devices) if kind == "embedded" else _mosquitto(devices)
    async with started as port:
        yield Broker(kind, port)


@asynccontextmanager
async def _embedded(devices: bool) -> AsyncIterator[int]:
    # Imported here, not at the top: the embedded broker is being rewritten, and while it
    # does not import, the Mosquitto half of the suite still proves the expectations.
    from tests.mqtt.device_support import make_device
    from tests.mqtt.embedded_support import Recorder, running_broker

    options: dict[str, Any] = {"SUBSCRIPTIONS": ["#"]}  # the application sees every message
    if devices:
        for device in DEVICES:
            await make_device(device, PASSWORD)
    else:
        options |= {"AUTH": "anonymous", "ACL": None}
    async with running_broker(Recorder(), **options) as run:
        yield run.port


@asynccontextmanager
async def _mosquitto(devices: bool) -> AsyncIterator[int]:
    if devices:
        started = running_mosquitto_with_devices(DEVICES, PASSWORD, *MOSQUITTO_CONFIG)
    else:
        started = running_mosquitto(0, *MOSQUITTO_CONFIG)
    with ExitStack() as stack:
        broker = await asyncio.to_thread(stack.enter_context, started)  # it waits for the port
        yield broker.port


def _mosquitto_passwd() -> str:
    found = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    if not Path(found).exists():
        not_installed("mosquitto_passwd is not installed (apt-get install mosquitto)")
    return found


@contextmanager
def running_mosquitto_with_devices(
    devices: Sequence[str], password: str, *extra_config: str
) -> Iterator[Mosquitto]:
    """A Mosquitto that knows `devices` (all with `password`), each limited to devices/<id>/#."""
    tool = _mosquitto_passwd()
    with tempfile.TemporaryDirectory(prefix="mosquitto-auth-") as directory:
        passwords, acl = Path(directory) / "passwords", Path(directory) / "acl"
        for index, device in enumerate(devices):
            create = ["-c"] if index == 0 else []
            command = [tool, "-b", *create, str(passwords), device, password]
            subprocess.run(command, check=True, capture_output=True)
        acl.write_text(DEVICE_ACL + "\n")
        auth = [f"password_file {passwords}", f"acl_file {acl}"]
        with running_mosquitto(0, "allow_anonymous false", *auth, *extra_config) as broker:
            yield broker


# --- paho ----------------------------------------------------------------------------------


async def _next(items: queue.Queue[T], timeout: float = WAIT) -> T:
    return await asyncio.to_thread(items.get, True, timeout)


class PahoClient:
    """A paho-mqtt client (MQTT 3.1.1) on its own network thread; what it gets lands in queues."""

    def __init__(
        self,
        client_id: str = "",
        *,
        clean_session: bool = True,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean_session,
            protocol=paho.MQTTv311,
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        self.connack: tuple[bool, int] | None = None
        """(session present, reason code) of the last CONNACK; paho reports MQTT 3.1.1 return
        codes as MQTT 5 reason codes (0 stays 0, "not authorised" 5 becomes 135)."""
        self.connacks: queue.Queue[tuple[bool, int]] = queue.Queue()
        self.subacks: queue.Queue[list[int]] = queue.Queue()
        self.messages: queue.Queue[paho.MQTTMessage] = queue.Queue()
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    def _on_connect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: Any, _: Any
    ) -> None:
        self.connacks.put((bool(flags.session_present), int(reason.value)))

    def _on_subscribe(
        self, client: paho.Client, userdata: Any, mid: int, codes: Any, _: Any
    ) -> None:
        self.subacks.put([int(code.value) for code in codes])

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        self.messages.put(message)

    async def connect(self, broker: Broker) -> tuple[bool, int]:
        """Connect and start the network thread; (session present, reason code) of the CONNACK."""
        await asyncio.to_thread(self.client.connect, broker.host, broker.port)
        self.client.loop_start()
        self.connack = await _next(self.connacks)
        return self.connack

    async def subscribe(self, topic_filter: str, qos: int) -> int:
        """Subscribe; the granted QoS (128 if refused)."""
        self.client.subscribe(topic_filter, qos)
        return (await _next(self.subacks))[0]

    async def publish(self, topic: str, payload: bytes, qos: int, *, retain: bool = False) -> None:
        """Publish; return once its QoS flow is done (at QoS 0: once it is written)."""
        info = self.client.publish(topic, payload, qos, retain)
        await asyncio.to_thread(info.wait_for_publish, WAIT)
        assert info.is_published(), f"{topic!r} was not acknowledged"

    async def message(self) -> paho.MQTTMessage:
        return await _next(self.messages)

    async def close(self) -> None:
        """DISCONNECT (so no will), then stop the network thread."""
        self.client.disconnect()
        await asyncio.to_thread(self.client.loop_stop)


@asynccontextmanager
async def paho_client(
    broker: Broker, client_id: str = "", **options: Any
) -> AsyncIterator[PahoClient]:
    """A connected PahoClient (options as for PahoClient); `connack` is its CONNACK."""
    client = PahoClient(client_id, **options)
    try:
        await client.connect(broker)
        yield client
    finally:
        await client.close()
