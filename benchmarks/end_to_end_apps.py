"""The application `end_to_end.py` measures: a reading from MQTT to every dashboard socket.

An `AsyncMqttConsumer` takes each reading on ``sensors/{device}/reading`` and sends it to the
``readings`` group; an `AsyncWebsocketConsumer` at ``/ws/readings/`` is in that group and
forwards each reading to its client as a text frame.
"""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.end_to_end_settings")

import django

django.setup()

from django.urls import path  # noqa: E402

from gateway import (  # noqa: E402
    AsyncMqttConsumer,
    AsyncWebsocketConsumer,
    MqttTopicRouter,
    ProtocolTypeRouter,
    URLRouter,
)
from gateway.types import Message  # noqa: E402
from routers import topic  # noqa: E402

GROUP = "readings"


class ReadingConsumer(AsyncMqttConsumer):
    """Hands every reading to the dashboards."""

    async def receive(self, payload: bytes) -> None:
        assert self.channel_layer is not None
        await self.channel_layer.group_send(
            GROUP, {"type": "reading", "text": payload.decode("utf-8")}
        )


class DashboardConsumer(AsyncWebsocketConsumer):
    """One dashboard: in the readings group, forwards each reading to its client."""

    groups = [GROUP]

    async def reading(self, event: Message) -> None:
        await self.send(text_data=event["text"])


application = ProtocolTypeRouter(
    {
        "websocket": URLRouter([path("ws/readings/", DashboardConsumer.as_asgi())]),
        "mqtt": MqttTopicRouter([topic("sensors/{device}/reading", ReadingConsumer.as_asgi())]),
    }
)
