"""One trace from a device's MQTT publish to a WebSocket send, through the real pipeline."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from asgiref.sync import async_to_sync

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway import AsyncJsonMqttConsumer, AsyncWebsocketConsumer, JsonMqttConsumer
from gateway.mqtt import InboundMessage, apublish, build_mqtt_scope
from gateway.pipeline import KeyedDispatcher
from gateway.run_event import run_one_event
from gateway.testing import WebsocketCommunicator
from gateway.types import Message
from tests.consumers.support import CountingLayer
from tests.tracing.support import recording_provider

DEVICE_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{DEVICE_TRACE}-00f067aa0ba902b7-01"


class Telemetry(AsyncJsonMqttConsumer):
    async def receive_json(self, content: Any) -> None:
        assert self.channel_layer is not None
        await self.channel_layer.group_send("dashboard", {"type": "reading", **content})
        await self.publish("devices/d1/ack", b"ok")


class Dashboard(AsyncWebsocketConsumer):
    groups = ["dashboard"]

    async def reading(self, message: Message) -> None:
        assert "_trace" not in message  # handlers never see the reserved key
        await self.send(text_data=str(message["value"]))


def _mqtt_scope(properties: dict[str, Any]) -> dict[str, Any]:
    topic = "devices/d1/telemetry"
    message = InboundMessage(topic, b'{"value": 21}', qos=1, properties=properties)  # type: ignore[arg-type]
    return dict(build_mqtt_scope(message, adapter="test", broker="external"))


async def _handle(scope: dict[str, Any], published: list[Message]) -> None:
    async def send(event: Message) -> None:
        published.append(event)

    dispatcher = KeyedDispatcher("mqtt")
    event = {"type": "mqtt.message", "payload": b'{"value": 21}'}
    app = Telemetry.as_asgi()
    outcome = await dispatcher.run(
        scope["topic"], lambda: run_one_event(app, scope, event, send), scope=scope, payload=b""
    )
    assert outcome.handled


def _parent_id(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


def _by_name(spans: tuple[ReadableSpan, ...]) -> dict[str, ReadableSpan]:
    return {span.name: span for span in spans}


async def test_device_publish_to_websocket_send_is_one_trace(
    layer: CountingLayer, spans: InMemorySpanExporter
) -> None:
    browser = WebsocketCommunicator(Dashboard.as_asgi(), "/ws/")
    assert (await browser.connect())[0]
    published: list[Message] = []
    await _handle(_mqtt_scope({"user_properties": [("traceparent", TRACEPARENT)]}), published)
    assert await browser.receive_from() == "21"
    await browser.disconnect()
    await asyncio.sleep(0)

    found = _by_name(spans.get_finished_spans())
    event = found["mqtt devices/d1/telemetry"]
    consumer = found["Telemetry.mqtt_message"]
    group_send = found["group_send dashboard"]
    websocket = found["Dashboard.reading"]
    chain = (event, consumer, group_send, websocket)
    assert {span.context.trace_id for span in chain} == {int(DEVICE_TRACE, 16)}
    assert _parent_id(event) == int("00f067aa0ba902b7", 16)
    assert _parent_id(consumer) == event.context.span_id
    assert _parent_id(group_send) == consumer.context.span_id
    assert _parent_id(websocket) == group_send.context.span_id
    assert event.attributes is not None
    assert event.attributes["gateway.protocol"] == "mqtt"
    assert event.attributes["gateway.mqtt.topic"] == "devices/d1/telemetry"
    assert event.attributes["gateway.adapter"] == "test"
    assert event.attributes["gateway.attempt"] == 1
    assert event.attributes["gateway.outcome"] == "handled"
    # The reply publish carries the trace on to MQTT 5 receivers.
    (ack,) = published
    pairs = dict(ack["properties"]["user_properties"])
    assert pairs["traceparent"].split("-")[1] == DEVICE_TRACE


async def test_an_event_without_a_context_starts_a_trace(
    layer: CountingLayer, spans: InMemorySpanExporter
) -> None:
    await _handle(_mqtt_scope({}), [])
    found = _by_name(spans.get_finished_spans())
    assert found["mqtt devices/d1/telemetry"].parent is None
    assert found["Telemetry.mqtt_message"].parent is not None


async def test_a_websocket_scope_continues_the_traceparent_header(
    layer: CountingLayer, spans: InMemorySpanExporter
) -> None:
    headers = [(b"traceparent", TRACEPARENT.encode())]
    browser = WebsocketCommunicator(Dashboard.as_asgi(), "/ws/", headers=headers)
    assert (await browser.connect())[0]
    await browser.disconnect()
    connect = _by_name(spans.get_finished_spans())["Dashboard.websocket_connect"]
    assert format(connect.context.trace_id, "032x") == DEVICE_TRACE


async def test_a_failing_event_records_its_attempts_and_outcome(
    spans: InMemorySpanExporter,
) -> None:
    from gateway.pipeline import RetryPolicy

    async def fail() -> None:
        raise RuntimeError("down")

    dispatcher = KeyedDispatcher("sms", retry=RetryPolicy(attempts=2, initial_backoff=0))
    scope = {"type": "sms", "from": "+441234", "provider": "twilio"}
    outcome = await dispatcher.run("+441234", fail, scope=scope, payload=b"")
    assert outcome.status == "dead_lettered"
    (span,) = spans.get_finished_spans()
    assert span.attributes is not None
    assert span.attributes["gateway.sms.from"] == "+441234"
    assert span.attributes["gateway.adapter"] == "twilio"
    assert span.attributes["gateway.attempt"] == 2
    assert span.attributes["gateway.outcome"] == "dead_lettered"


class Answer(AsyncJsonMqttConsumer):
    async def receive_json(self, content: Any) -> None:
        await self.reply(b"done")


async def test_a_reply_to_an_mqtt_5_request_carries_the_trace(spans: InMemorySpanExporter) -> None:
    properties = {"response_topic": "devices/d1/answers", "correlation_data": b"7"}
    scope = _mqtt_scope(properties)
    published: list[Message] = []

    async def send(event: Message) -> None:
        published.append(event)

    event = {"type": "mqtt.message", "payload": b"{}"}
    await KeyedDispatcher("mqtt").run(
        "t", lambda: run_one_event(Answer.as_asgi(), scope, event, send), scope=scope, payload=b""
    )
    (answer,) = published
    assert answer["topic"] == "devices/d1/answers"
    assert answer["properties"]["correlation_data"] == b"7"
    traceparent = dict(answer["properties"]["user_properties"])["traceparent"]
    (span,) = (s for s in spans.get_finished_spans() if s.name == "Answer.mqtt_message")
    assert traceparent.split("-")[2] == format(span.context.span_id, "016x")


class SyncTelemetry(JsonMqttConsumer):
    def receive_json(self, content: Any) -> None:
        assert self.channel_layer is not None
        async_to_sync(self.channel_layer.group_send)("dashboard", {"type": "reading", **content})


@pytest.mark.django_db(transaction=True)  # a sync consumer closes stale connections
async def test_a_sync_consumers_group_send_continues_the_trace(
    layer: CountingLayer, spans: InMemorySpanExporter
) -> None:
    browser = WebsocketCommunicator(Dashboard.as_asgi(), "/ws/")
    assert (await browser.connect())[0]
    scope = _mqtt_scope({"user_properties": [("traceparent", TRACEPARENT)]})

    async def send(event: Message) -> None:
        pass

    event = {"type": "mqtt.message", "payload": b'{"value": 22}'}
    app = SyncTelemetry.as_asgi()
    await KeyedDispatcher("mqtt").run(
        "t", lambda: run_one_event(app, scope, event, send), scope=scope, payload=b""
    )
    assert await browser.receive_from() == "22"
    await browser.disconnect()
    found = _by_name(spans.get_finished_spans())
    assert _parent_id(found["group_send dashboard"]) == (
        found["SyncTelemetry.mqtt_message"].context.span_id
    )
    assert _parent_id(found["Dashboard.reading"]) == found["group_send dashboard"].context.span_id


async def test_apublish_in_a_span_reaches_mqtt_with_its_traceparent(
    layer: CountingLayer, spans: InMemorySpanExporter
) -> None:
    from protocol_adapters.mqtt.common import serve_publish_channel

    published: list[Message] = []
    stop = asyncio.Event()

    async def publish(event: Message) -> None:
        published.append(event)
        stop.set()

    serving = asyncio.create_task(serve_publish_channel(publish, stop=stop))
    tracer = recording_provider()[0].get_tracer("tests")
    with tracer.start_as_current_span("view") as view:
        await apublish("devices/d1/commands", b"reboot", 1)
    await asyncio.wait_for(serving, 10)
    (event,) = published
    traceparent = dict(event["properties"]["user_properties"])["traceparent"]
    assert traceparent.split("-")[1] == format(view.get_span_context().trace_id, "032x")
    assert "_trace" not in event
