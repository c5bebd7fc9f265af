"""gateway.mqtt: topic rules, payload encoding, publishing through the layer to a serving loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.test import override_settings

from gateway.exceptions import ChannelLayerUnavailable, ImproperlyConfiguredGateway
from gateway.layers import InMemoryChannelLayer, get_channel_layer
from gateway.mqtt import (
    MAX_PAYLOAD,
    PUBLISH_CHANNEL,
    MqttPublishError,
    apublish,
    encode_payload,
    make_publish_event,
    publish,
    split_shared_subscription,
    topic_matches,
    validate_topic_filter,
    validate_topic_name,
)
from gateway.types import MqttPublishEvent
from protocol_adapters.mqtt.common import serve_publish_channel

WAIT = 10.0


class FlakyLayer(InMemoryChannelLayer):
    """The in-memory layer whose first receives fail, as an unreachable backend's would."""

    failures_at_start = 2
    failures = failures_at_start

    async def receive(self, channel: str) -> dict[str, Any]:
        if self.failures:
            self.failures -= 1
            raise ChannelLayerUnavailable("backend down")
        return await super().receive(channel)


@pytest.fixture
def fresh_layer() -> Iterator[None]:
    """A fresh in-memory default layer for each test."""
    with override_settings(
        CHANNEL_LAYERS={"default": {"BACKEND": "gateway.layers.InMemoryChannelLayer"}}
    ):
        yield


class Served:
    """A serve_publish_channel loop running in the background, recording what it published."""

    def __init__(self) -> None:
        self.events: list[MqttPublishEvent] = []
        self.arrived = asyncio.Condition()
        self.stop = asyncio.Event()

    async def publish(self, event: MqttPublishEvent) -> None:
        if event["topic"] == "explode":
            raise RuntimeError("the broker connection is gone")
        async with self.arrived:
            self.events.append(event)
            self.arrived.notify_all()

    async def wait_for(self, count: int) -> list[MqttPublishEvent]:
        async with asyncio.timeout(WAIT), self.arrived:
            await self.arrived.wait_for(lambda: len(self.events) >= count)
        return self.events


@pytest.fixture
async def served(fresh_layer: None) -> AsyncIterator[Served]:
    served = Served()
    task = asyncio.create_task(serve_publish_channel(served.publish, stop=served.stop))
    yield served
    served.stop.set()
    await asyncio.wait_for(task, WAIT)


# --- rules -----------------------------------------------------------------------------------


def test_topic_names() -> None:
    assert validate_topic_name("devices/d1/cmd") == "devices/d1/cmd"
    assert validate_topic_name("/") == "/"
    for bad, reason in [
        ("a/+", "wildcard"),
        ("#", "wildcard"),
        ("", "empty"),
        ("a\x00b", "NUL"),
        ("x" * 65536, "65535"),
        ("\ud800", "UTF-8"),
    ]:
        with pytest.raises(MqttPublishError, match=reason):
            validate_topic_name(bad)
    with pytest.raises(MqttPublishError, match="str"):
        validate_topic_name(b"bytes")


def test_topic_filters() -> None:
    for good in ["#", "+", "a/+/b", "a/#", "+/+", "$share/g/a/#", "$SYS/#"]:
        assert validate_topic_filter(good) == good
    for bad in ["a/#/b", "a#", "a/b+", "$share/g", "$share//a", "$share/g+/a", ""]:
        with pytest.raises(MqttPublishError):
            validate_topic_filter(bad)
    assert split_shared_subscription("$share/g/a/+") == ("g", "a/+")
    assert split_shared_subscription("a/+") == (None, "a/+")


def test_topic_matches() -> None:
    assert topic_matches("a/+/c", "a/b/c")
    assert topic_matches("a/#", "a")
    assert topic_matches("+", "")
    assert not topic_matches("a/+", "a/b/c")
    assert not topic_matches("#", "$SYS/x")
    assert topic_matches("$SYS/#", "$SYS/x")


def test_payload_encoding() -> None:
    assert encode_payload(b"\x00") == b"\x00"
    assert encode_payload(bytearray(b"ab")) == b"ab"
    assert encode_payload("é") == "é".encode()
    assert encode_payload({"a": [1, None]}) == b'{"a":[1,null]}'
    with pytest.raises(MqttPublishError, match="JSON"):
        encode_payload(object())


def test_make_publish_event_checks_qos_retain_size_and_properties() -> None:
    event = make_publish_event("t", "x", 2, True, properties={"content_type": "text/plain"})
    assert event == {
        "type": "mqtt.publish",
        "topic": "t",
        "payload": b"x",
        "qos": 2,
        "retain": True,
        "properties": {"content_type": "text/plain"},
    }
    with pytest.raises(MqttPublishError, match="qos"):
        make_publish_event("t", b"", 3)
    with pytest.raises(MqttPublishError, match="qos"):
        make_publish_event("t", b"", True)
    with pytest.raises(MqttPublishError, match="retain"):
        make_publish_event("t", b"", 0, "yes")  # type: ignore[arg-type]
    with pytest.raises(MqttPublishError, match=f"over the limit of {MAX_PAYLOAD}"):
        make_publish_event("t", b"x" * (MAX_PAYLOAD + 1))
    with pytest.raises(MqttPublishError, match="over the limit of 4"):
        make_publish_event("t", b"12345", max_payload=4)
    with pytest.raises(MqttPublishError, match="unknown MQTT properties"):
        make_publish_event("t", b"", properties={"colour": "red"})


# --- through the channel layer ---------------------------------------------------------------


async def test_apublish_reaches_the_serving_loop(served: Served) -> None:
    await apublish("devices/d1/cmd", {"on": True}, qos=1)
    await apublish("devices/d2/cmd", "text", retain=True)
    events = await served.wait_for(2)
    assert events == [
        {
            "type": "mqtt.publish",
            "topic": "devices/d1/cmd",
            "payload": b'{"on":true}',
            "qos": 1,
            "retain": False,
        },
        {
            "type": "mqtt.publish",
            "topic": "devices/d2/cmd",
            "payload": b"text",
            "qos": 0,
            "retain": True,
        },
    ]


async def test_apublish_refuses_bad_messages_before_sending(fresh_layer: None) -> None:
    with pytest.raises(MqttPublishError, match="wildcard"):
        await apublish("devices/#", b"x")
    layer = get_channel_layer()
    assert layer is not None
    await layer.send(PUBLISH_CHANNEL, {"type": "marker"})
    # Nothing was sent before the marker: the refused message never reached the layer.
    assert await layer.receive(PUBLISH_CHANNEL) == {"type": "marker"}


async def test_serving_loop_survives_bad_messages_and_publish_errors(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    layer = get_channel_layer()
    assert layer is not None
    with caplog.at_level(logging.ERROR, logger="gateway.mqtt"):
        await layer.send(PUBLISH_CHANNEL, {"type": "mqtt.publish", "topic": "a/#", "payload": b""})
        await layer.send(PUBLISH_CHANNEL, {"type": "something.else"})
        await apublish("explode", b"")
        await apublish("after", b"ok")
        events = await served.wait_for(1)
    assert [e["topic"] for e in events] == ["after"]
    assert "dropping a bad message" in caplog.text
    assert "publishing to 'explode'" in caplog.text


async def test_serving_loop_survives_layer_errors(caplog: pytest.LogCaptureFixture) -> None:
    layers = {"default": {"BACKEND": "tests.mqtt.test_publish.FlakyLayer"}}
    with override_settings(CHANNEL_LAYERS=layers), caplog.at_level(logging.ERROR):
        served = Served()
        task = asyncio.create_task(serve_publish_channel(served.publish, stop=served.stop))
        await apublish("t", b"1")
        events = await served.wait_for(1)
        served.stop.set()
        await asyncio.wait_for(task, WAIT)
    assert [e["payload"] for e in events] == [b"1"]
    failures = [r for r in caplog.records if r.getMessage().startswith("receiving from")]
    assert len(failures) == FlakyLayer.failures_at_start


async def test_serving_loop_without_a_layer_returns() -> None:
    with override_settings(CHANNEL_LAYERS={}):
        stop = asyncio.Event()
        served = Served()
        await asyncio.wait_for(serve_publish_channel(served.publish, stop=stop), WAIT)
        with pytest.raises(ImproperlyConfiguredGateway, match="channel layer"):
            await apublish("t", b"")


async def test_sync_publish_refuses_a_running_loop() -> None:
    with pytest.raises(RuntimeError, match="apublish"):
        publish("t", b"x")


def test_sync_publish_sends_on_the_layer(fresh_layer: None) -> None:
    publish("devices/d1/cmd", "reboot", qos=1)
    layer = get_channel_layer()
    assert layer is not None
    message = async_to_sync(layer.receive)(PUBLISH_CHANNEL)
    assert (message["topic"], message["payload"], message["qos"]) == (
        "devices/d1/cmd",
        b"reboot",
        1,
    )
    with pytest.raises(MqttPublishError, match="over the limit"):
        publish("t", b"xx", max_payload=1)


async def test_sync_publish_from_a_worker_thread_reaches_the_serving_loop(served: Served) -> None:
    # What a view or a sync consumer does: sync code in a thread, under the running loop.
    await sync_to_async(publish)("devices/d3/cmd", ["a", 1])
    events = await served.wait_for(1)
    assert [(e["topic"], e["payload"]) for e in events] == [("devices/d3/cmd", b'["a",1]')]
