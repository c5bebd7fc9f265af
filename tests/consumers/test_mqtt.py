"""MQTT consumers, driven through MqttCommunicator."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User

import gateway
from gateway.consumers import (
    AsyncJsonMqttConsumer,
    AsyncMqttConsumer,
    JsonMqttConsumer,
    MqttConsumer,
)
from gateway.db import database_sync_to_async
from gateway.mqtt import InvalidPayload, MqttPublishError
from gateway.testing import MqttCommunicator
from routers import MqttTopicRouter, topic


class Echo(AsyncMqttConsumer):
    """Publishes what it got, with the scope details, to a reply topic."""

    async def receive(self, payload: bytes) -> None:
        details = f"{self.topic}|{self.qos}|{self.retain}|{self.device_id}|{self.client_id}"
        await self.publish("replies/echo", payload + b"|" + details.encode(), qos=1, retain=True)


class Readings(AsyncJsonMqttConsumer):
    """Answers each JSON reading with the doubled value, on a topic named by the route."""

    async def receive_json(self, data: Any) -> None:
        device = self.scope["url_route"]["kwargs"]["device_id"]
        await self.publish(f"devices/{device}/doubled", {"value": data["value"] * 2})
        assert self.channel_layer is not None  # consumers may use the layer


class SyncReadings(JsonMqttConsumer):
    """Stores each reading with the ORM (a user named after it) and publishes the count."""

    def receive_json(self, data: Any) -> None:
        User.objects.create_user(f"{self.device_id}-{data['n']}")
        self.publish("counts", str(User.objects.count()))


class RawSync(MqttConsumer):
    """Publishes the payload's length, from a worker thread."""

    def receive(self, payload: bytes) -> None:
        self.publish("lengths", str(len(payload)).encode())


class BadPublisher(AsyncMqttConsumer):
    async def receive(self, payload: bytes) -> None:
        await self.publish("devices/+/command", b"x")


async def test_receive_and_publish_with_scope_attributes() -> None:
    comm = MqttCommunicator(
        Echo.as_asgi(), "devices/d1/up", b"hi", qos=1, retain=True, client_id="c", device_id="d1"
    )
    events = await comm.deliver()
    assert events == [
        {
            "type": "mqtt.publish",
            "topic": "replies/echo",
            "payload": b"hi|devices/d1/up|1|True|d1|c",
            "qos": 1,
            "retain": True,
        }
    ]


async def test_json_consumer_behind_a_router() -> None:
    router = MqttTopicRouter([topic("devices/{device_id}/reading", Readings.as_asgi())])
    events = await MqttCommunicator(router, "devices/7/reading", '{"value": 21}').deliver()
    assert [(e["topic"], e["payload"]) for e in events] == [("devices/7/doubled", b'{"value":42}')]


@pytest.mark.parametrize("payload", [b"{not json", b"\xff\xfe", b""])
async def test_invalid_json_raises_invalid_payload(payload: bytes) -> None:
    comm = MqttCommunicator(Readings.as_asgi(), "devices/7/reading", payload)
    with pytest.raises(InvalidPayload, match="devices/7/reading"):
        await comm.deliver()
    assert InvalidPayload.retryable is False


async def test_sync_consumer_publishes_from_its_thread() -> None:
    events = await MqttCommunicator(RawSync.as_asgi(), "raw", b"12345").deliver()
    assert [(e["topic"], e["payload"]) for e in events] == [("lengths", b"5")]


async def test_publishing_to_a_wildcard_topic_is_refused() -> None:
    with pytest.raises(MqttPublishError, match="wildcard"):
        await MqttCommunicator(BadPublisher.as_asgi(), "t", b"").deliver()


async def test_a_consumer_that_publishes_nothing_returns_an_empty_list() -> None:
    assert await MqttCommunicator(AsyncMqttConsumer.as_asgi(), "t", b"x").deliver() == []


@pytest.mark.django_db(transaction=True)
async def test_sync_json_consumer_uses_the_database() -> None:
    await database_sync_to_async(User.objects.create_user)("existing")
    app = SyncReadings.as_asgi()
    first = await MqttCommunicator(app, "d/r", '{"n": 1}', device_id="dev").deliver()
    second = await MqttCommunicator(app, "d/r", '{"n": 2}', device_id="dev").deliver()
    assert [e["payload"] for e in first + second] == [b"2", b"3"]
    names = await database_sync_to_async(
        lambda: sorted(User.objects.values_list("username", flat=True))
    )()
    assert names == ["dev-1", "dev-2", "existing"]


def test_consumers_are_public() -> None:
    assert gateway.MqttConsumer is MqttConsumer
    assert gateway.AsyncMqttConsumer is AsyncMqttConsumer
    assert gateway.JsonMqttConsumer is JsonMqttConsumer
    assert gateway.AsyncJsonMqttConsumer is AsyncJsonMqttConsumer
