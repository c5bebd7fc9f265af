"""A root application of real consumers, for the end-to-end tests under `gateway run`.

/ws/echo/        echoes text frames
/ws/room/<name>/ joins group "room-<name>"; a text frame is broadcast to the whole room
/ws/crash/       raises inside `receive`
/ws/stray/       sends itself a layer message of a type it has no handler for
"""

from __future__ import annotations

import os
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.server.e2e_settings")
django_asgi_app = get_asgi_application()

from django.urls import path  # noqa: E402

from gateway import (  # noqa: E402
    AsyncJsonWebsocketConsumer,
    AsyncWebsocketConsumer,
    ProtocolTypeRouter,
    URLRouter,
)


class Echo(AsyncWebsocketConsumer):
    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        await self.send(text_data=text_data, bytes_data=bytes_data)


class Room(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        self.group = "room-" + self.scope["url_route"]["kwargs"]["name"]
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send_json({"joined": self.group})

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        await self.channel_layer.group_send(self.group, {"type": "room.message", "body": content})

    async def room_message(self, event: dict[str, Any]) -> None:
        await self.send_json(event["body"])

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(self.group, self.channel_name)


class Crash(AsyncWebsocketConsumer):
    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        raise RuntimeError(f"consumer crashed on {text_data!r}")


class Stray(AsyncWebsocketConsumer):
    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        await self.channel_layer.send(self.channel_name, {"type": "no.such.handler"})


application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": URLRouter(
            [
                path("ws/echo/", Echo.as_asgi()),
                path("ws/room/<slug:name>/", Room.as_asgi()),
                path("ws/crash/", Crash.as_asgi()),
                path("ws/stray/", Stray.as_asgi()),
            ]
        ),
    }
)
