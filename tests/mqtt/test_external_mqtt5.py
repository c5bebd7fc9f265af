"""MQTT 5 properties for consumers, through a real Mosquitto: scope, publish and reply()."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from gateway import AsyncMqttConsumer, MqttConsumer, MqttTopicRouter, ProtocolTypeRouter
from gateway.types import ASGIApp
from routers import topic
from tests.integration.mosquitto import Mosquitto, running_mosquitto
from tests.mqtt.external_support import eventually, running_gateway, settings_for
from tests.mqtt.paho_support import PahoClient, publish_properties

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    with running_mosquitto() as started:
        yield started


ALL_PROPERTIES = {
    "PayloadFormatIndicator": 1,
    "MessageExpiryInterval": 600,
    "ContentType": "application/json",
    "ResponseTopic": "clients/c-1/answers",
    "CorrelationData": b"\x00req-1",
    "UserProperty": [("site", "north"), ("site", "south")],
}


class Echo(AsyncMqttConsumer):
    seen: list[dict[str, Any]] | None = None

    async def receive(self, payload: bytes) -> None:
        if self.seen is not None:
            self.seen.append(dict(self.scope))
        if payload == b"publish":
            await self.publish(
                "out/props",
                "hi",
                qos=1,
                properties={
                    "payload_format_indicator": 1,
                    "message_expiry_interval": 300,
                    "content_type": "text/plain",
                    "response_topic": "out/answers",
                    "correlation_data": b"c-9",
                    "user_properties": [["k", "v"], ["k", "w"]],
                },
            )
        elif self.properties.get("response_topic"):
            await self.reply({"echo": payload.decode()}, properties={"content_type": "json"})


class SyncEcho(MqttConsumer):
    def receive(self, payload: bytes) -> None:
        self.reply(payload.upper())


def app(seen: list[dict[str, Any]]) -> ASGIApp:
    return ProtocolTypeRouter(
        {
            "mqtt": MqttTopicRouter(
                [
                    topic("in/{name}", Echo.as_asgi(seen=seen)),
                    topic("sync/{name}", SyncEcho.as_asgi()),
                ]
            )
        }
    )


async def test_every_mqtt5_property_appears_in_the_scope(broker: Mosquitto) -> None:
    seen: list[dict[str, Any]] = []
    async with running_gateway(app(seen), settings_for(broker)):
        device = await asyncio.to_thread(PahoClient, broker, "dev-props")
        try:
            properties = publish_properties(**ALL_PROPERTIES)
            await asyncio.to_thread(device.publish, "in/x", b"quiet", 1, False, properties)
            await eventually(lambda: bool(seen), "the consumer to run")
        finally:
            device.close()
    scope_properties = seen[0]["properties"]
    expiry = scope_properties.pop("message_expiry_interval")
    assert 598 <= expiry <= 600  # what was left when Mosquitto forwarded it
    assert scope_properties == {
        "payload_format_indicator": 1,
        "content_type": "application/json",
        "response_topic": "clients/c-1/answers",
        "correlation_data": b"\x00req-1",
        "user_properties": [["site", "north"], ["site", "south"]],
    }


async def test_publish_sends_every_mqtt5_property(broker: Mosquitto) -> None:
    async with running_gateway(app([]), settings_for(broker)):
        watcher = await asyncio.to_thread(PahoClient, broker, "watcher")
        try:
            await asyncio.to_thread(watcher.subscribe, "out/#")
            await asyncio.to_thread(watcher.publish, "in/x", b"publish")
            got = await watcher.next()
        finally:
            watcher.close()
    assert (got.topic, got.payload, got.qos) == ("out/props", b"hi", 1)
    assert got.properties["PayloadFormatIndicator"] == 1
    assert 295 <= got.properties["MessageExpiryInterval"] <= 300
    assert got.properties["ContentType"] == "text/plain"
    assert got.properties["ResponseTopic"] == "out/answers"
    assert got.properties["CorrelationData"] == b"c-9"
    assert got.properties["UserProperty"] == [("k", "v"), ("k", "w")]


@pytest.mark.parametrize("route", ["in", "sync"])
async def test_reply_answers_on_the_response_topic_with_the_correlation_data(
    broker: Mosquitto, route: str
) -> None:
    async with running_gateway(app([]), settings_for(broker)):
        requester = await asyncio.to_thread(PahoClient, broker, "requester")
        try:
            await asyncio.to_thread(requester.subscribe, "clients/c-1/answers")
            request = publish_properties(
                ResponseTopic="clients/c-1/answers", CorrelationData=b"\x00req-1"
            )
            await asyncio.to_thread(requester.publish, f"{route}/x", b"ping", 1, False, request)
            answer = await requester.next()
        finally:
            requester.close()
    assert answer.topic == "clients/c-1/answers"
    assert answer.properties["CorrelationData"] == b"\x00req-1"
    assert answer.qos == 1  # the request's QoS
    if route == "in":
        assert answer.payload == b'{"echo":"ping"}'
        assert answer.properties["ContentType"] == "json"
    else:
        assert answer.payload == b"PING"


async def test_a_message_without_a_response_topic_cannot_be_replied_to(broker: Mosquitto) -> None:
    letters: list[Any] = []

    async def dead_letter(letter: Any) -> None:
        letters.append(letter)

    async with running_gateway(app([]), settings_for(broker, dead_letter=dead_letter)):
        device = await asyncio.to_thread(PahoClient, broker, "no-response-topic")
        try:
            await asyncio.to_thread(device.publish, "sync/x", b"ping")
            await eventually(lambda: bool(letters), "the dead letter")
        finally:
            device.close()
    assert "has no response topic" in letters[0].error


async def test_mqtt311_scopes_have_no_properties(broker: Mosquitto) -> None:
    seen: list[dict[str, Any]] = []
    settings = settings_for(broker, PROTOCOL="3.1.1")
    async with running_gateway(app(seen), settings):
        device = await asyncio.to_thread(PahoClient, broker, "dev-v5")
        try:
            properties = publish_properties(**ALL_PROPERTIES)
            await asyncio.to_thread(device.publish, "in/x", b"quiet", 1, False, properties)
            await eventually(lambda: bool(seen), "the consumer to run")
        finally:
            device.close()
    assert seen[0]["properties"] == {}
