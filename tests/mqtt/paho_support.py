"""A paho-mqtt client for tests: MQTT 5 or 3.1.1, messages collected in a thread-safe queue."""

from __future__ import annotations

import asyncio
import json
import queue
import threading
from dataclasses import dataclass, field
from typing import Any, Protocol

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


class Broker(Protocol):
    """Where a paho client connects: a `Mosquitto`, an embedded broker's `RunningBroker`."""

    @property
    def port(self) -> int: ...


WAIT = 20.0  # only turns a hang into a failure


@dataclass(frozen=True)
class Received:
    """One message a paho client got."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    properties: dict[str, Any] = field(default_factory=dict)


def publish_properties(**values: Any) -> Properties:
    """paho PUBLISH properties from keyword arguments (``CorrelationData=b"..."``, ...)."""
    properties = Properties(PacketTypes.PUBLISH)
    for name, value in values.items():
        setattr(properties, name, value)
    return properties


class PahoClient:
    """A connected paho client running its network loop in a thread."""

    def __init__(
        self,
        broker: Broker,
        client_id: str,
        *,
        mqtt5: bool = True,
        clean: bool = True,
        will: tuple[str, bytes, bool] | None = None,
        keepalive: int = 60,
    ) -> None:
        protocol = paho.MQTTv5 if mqtt5 else paho.MQTTv311
        self.mqtt5 = mqtt5
        self.client = paho.Client(
            paho.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=protocol,
            clean_session=None if mqtt5 else clean,
        )
        self.messages: queue.Queue[Received] = queue.Queue()
        self.client.on_message = self._on_message
        if will is not None:
            self.client.will_set(will[0], will[1], qos=1, retain=will[2])
        self._connected = threading.Event()
        self.client.on_connect = lambda *args: self._connected.set()
        connect: dict[str, Any] = {"keepalive": keepalive}
        if mqtt5:
            connect["clean_start"] = clean
            if not clean:
                session = Properties(PacketTypes.CONNECT)
                session.SessionExpiryInterval = 3600
                connect["properties"] = session
        self.client.connect("127.0.0.1", broker.port, **connect)
        self.client.loop_start()
        if not self._connected.wait(WAIT):
            raise AssertionError(f"paho client {client_id} did not connect")

    def _on_message(self, client: Any, userdata: Any, message: paho.MQTTMessage) -> None:
        properties: dict[str, Any] = {}
        if message.properties is not None:
            names = (name.replace(" ", "") for name in message.properties.names)
            properties = {
                name: getattr(message.properties, name)
                for name in names
                if hasattr(message.properties, name)
            }
        self.messages.put(
            Received(message.topic, message.payload, message.qos, message.retain, properties)
        )

    def subscribe(self, topic_filter: str, qos: int = 1) -> None:
        done = threading.Event()
        self.client.on_subscribe = lambda *args: done.set()
        self.client.subscribe(topic_filter, qos)
        assert done.wait(WAIT), f"no SUBACK for {topic_filter}"

    def publish(
        self,
        topic: str,
        payload: bytes | str,
        qos: int = 1,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> None:
        info = self.client.publish(topic, payload, qos, retain, properties=properties)
        info.wait_for_publish(WAIT)

    async def next(self, timeout: float = WAIT) -> Received:
        """The next message, waiting in a thread so the event loop keeps running."""
        return await asyncio.to_thread(self.messages.get, True, timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class AnsweringDevice(PahoClient):
    """A device that answers every command on ``devices/<id>/commands/#`` after `delay` seconds.

    MQTT 5: to the command's response topic with its correlation data. MQTT 3.1.1: to
    ``devices/<id>/responses/<request id>``, the id being the command topic's last level.
    The answer is ``{"device": id, "command": ..., "got": <the command's payload>}``.
    """

    def __init__(
        self, broker: Broker, device_id: str, *, delay: float = 0.0, **options: Any
    ) -> None:
        self.device_id = device_id
        self.delay = delay
        self.commands: queue.Queue[Received] = queue.Queue()
        super().__init__(broker, options.pop("client_id", device_id), **options)
        self.subscribe(f"devices/{device_id}/commands/#")

    def _on_message(self, client: Any, userdata: Any, message: paho.MQTTMessage) -> None:
        # Set before connecting: a resumed session's queued commands come at once.
        levels = message.topic.split("/")
        properties = message.properties
        response_topic = getattr(properties, "ResponseTopic", None) if properties else None
        answer_properties = None
        if self.mqtt5 and response_topic:
            command = "/".join(levels[3:])
            answer_properties = publish_properties(
                CorrelationData=properties.CorrelationData  # type: ignore[union-attr]
            )
        else:
            command = "/".join(levels[3:-1])
            response_topic = f"devices/{self.device_id}/responses/{levels[-1]}"
        self.commands.put(Received(message.topic, message.payload, message.qos, message.retain))
        body = json.dumps(
            {"device": self.device_id, "command": command, "got": message.payload.decode()}
        )

        def send() -> None:
            client.publish(response_topic, body, 1, properties=answer_properties)

        if self.delay:
            threading.Timer(self.delay, send).start()
        else:
            send()
