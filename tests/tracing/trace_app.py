"""The cross-process trace test's application, exporting its spans as JSON lines.

MQTT devices/<id>/telemetry: `Telemetry` sends the reading to group "dashboard" and publishes
devices/<id>/ack;
/ws/dashboard/: `Dashboard` joins it and sends each reading to its browser. The process's
spans go, one JSON object a line, to the file named by TRACE_TEST_SPANS.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, cast

from django.core.asgi import get_asgi_application
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.tracing.trace_settings")
django_asgi_app = get_asgi_application()

from django.urls import path  # noqa: E402

from gateway import (  # noqa: E402
    AsyncJsonMqttConsumer,
    AsyncWebsocketConsumer,
    MqttTopicRouter,
    ProtocolTypeRouter,
    URLRouter,
)
from gateway.types import ASGIApp, Message  # noqa: E402
from routers import topic  # noqa: E402


def _one_line(span: ReadableSpan) -> str:
    return span.to_json(indent=None) + "\n"


provider = TracerProvider()
spans_file = Path(os.environ["TRACE_TEST_SPANS"]).open("a")  # noqa: SIM115  # the process's
provider.add_span_processor(
    SimpleSpanProcessor(ConsoleSpanExporter(out=spans_file, formatter=_one_line))
)
trace.set_tracer_provider(provider)


class Telemetry(AsyncJsonMqttConsumer):
    async def receive_json(self, content: Any) -> None:
        await self.channel_layer.group_send("dashboard", {"type": "reading", "value": content})
        await self.publish(self.topic.replace("/telemetry", "/ack"), b"ok", qos=1)


class Dashboard(AsyncWebsocketConsumer):
    groups = ["dashboard"]

    async def connect(self) -> None:
        await self.accept()
        await self.send(text_data="joined")

    async def reading(self, message: Message) -> None:
        await self.send(text_data=str(message["value"]))


application = ProtocolTypeRouter(
    {
        "http": cast(ASGIApp, django_asgi_app),
        "websocket": URLRouter([path("ws/dashboard/", Dashboard.as_asgi())]),
        "mqtt": MqttTopicRouter([topic("devices/{device_id}/telemetry", Telemetry.as_asgi())]),
    }
)
