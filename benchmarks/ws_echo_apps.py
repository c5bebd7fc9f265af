"""The two WebSocket echo applications compared by `ws_echo.py`: ours and stock Channels."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")

import django

django.setup()

from django.urls import path  # noqa: E402

from gateway import AsyncWebsocketConsumer, ProtocolTypeRouter, URLRouter  # noqa: E402


class EchoConsumer(AsyncWebsocketConsumer):
    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        await self.send(text_data=text_data, bytes_data=bytes_data)


gateway_application = ProtocolTypeRouter(
    {"websocket": URLRouter([path("ws/echo/", EchoConsumer.as_asgi())])}
)


def _channels_application():  # type: ignore[no-untyped-def]
    from channels.generic.websocket import AsyncWebsocketConsumer as ChannelsConsumer
    from channels.routing import ProtocolTypeRouter as ChannelsRouter
    from channels.routing import URLRouter as ChannelsURLRouter
    from django.conf import settings

    # Channels' own in-memory layer, as its tutorial configures it.
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

    class ChannelsEcho(ChannelsConsumer):  # type: ignore[misc]
        async def receive(self, text_data=None, bytes_data=None):  # type: ignore[no-untyped-def]
            await self.send(text_data=text_data, bytes_data=bytes_data)

    return ChannelsRouter(
        {"websocket": ChannelsURLRouter([path("ws/echo/", ChannelsEcho.as_asgi())])}
    )


if os.environ.get("BENCH_STACK") == "channels":
    channels_application = _channels_application()
