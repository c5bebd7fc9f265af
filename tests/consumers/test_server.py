"""Routers and consumers behind a real uvicorn server, with real HTTP and WebSocket clients."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
import uvicorn
from django.core.asgi import get_asgi_application
from django.urls import path
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedError
from websockets.typing import Subprotocol

from gateway.consumers import AsyncJsonWebsocketConsumer
from gateway.types import ASGIApp
from routers import ProtocolTypeRouter, URLRouter
from tests.consumers.support import CountingLayer

pytestmark = pytest.mark.integration


class RoomConsumer(AsyncJsonWebsocketConsumer):
    groups = ["lobby"]

    async def connect(self) -> None:
        await self.accept(self.scope["subprotocols"][0] if self.scope["subprotocols"] else None)

    async def receive_json(self, content: object, **kwargs: object) -> None:
        if content == "crash":
            raise RuntimeError("consumer crashed on purpose")
        assert self.channel_layer is not None
        await self.channel_layer.group_send("lobby", {"type": "room.message", "content": content})

    async def room_message(self, message: dict[str, object]) -> None:
        await self.send_json({"room": self.scope["url_route"]["kwargs"], "got": message["content"]})


def application() -> ASGIApp:
    return ProtocolTypeRouter(
        {
            "http": get_asgi_application(),
            "websocket": URLRouter([path("ws/rooms/<int:room>/", RoomConsumer.as_asgi())]),
        }
    )


@asynccontextmanager
async def serving(app: ASGIApp) -> AsyncIterator[str]:
    """Run ``app`` on uvicorn (lifespan on) on a free 127.0.0.1 port; yield host:port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, lifespan="on", log_level="critical")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(30):
            while not server.started:
                assert not task.done(), "uvicorn did not start"
                await asyncio.sleep(0.02)
        yield f"127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()


async def test_group_chat_over_real_websockets(layer: CountingLayer) -> None:
    async with (
        serving(application()) as host,
        connect(
            f"ws://{host}/ws/rooms/7/", subprotocols=[Subprotocol("chat.v1")], proxy=None
        ) as alice,
        connect(f"ws://{host}/ws/rooms/7/", proxy=None) as bob,
    ):
        assert alice.subprotocol == "chat.v1"
        assert len(layer.members["lobby"]) == 2
        await alice.send(json.dumps({"text": "hi"}))
        expected = {"room": {"room": 7}, "got": {"text": "hi"}}
        async with asyncio.timeout(10):
            assert json.loads(await alice.recv()) == expected
            assert json.loads(await bob.recv()) == expected
        await bob.close()
        async with asyncio.timeout(10):
            while len(layer.members["lobby"]) != 1:
                await asyncio.sleep(0.01)


async def test_crashing_consumer_drops_connection_and_leaves_groups(layer: CountingLayer) -> None:
    async with (
        serving(application()) as host,
        connect(f"ws://{host}/ws/rooms/1/", proxy=None) as ws,
    ):
        assert len(layer.members["lobby"]) == 1
        await ws.send(json.dumps("crash"))
        with pytest.raises(ConnectionClosedError) as closed:
            async with asyncio.timeout(10):
                await ws.recv()
        # The error reaches the server (uvicorn drops the connection; the client sees
        # no clean close), and the consumer left its group on the way out.
        assert closed.value.rcvd is None or closed.value.rcvd.code == 1011
        assert layer.members["lobby"] == set()


@pytest.mark.django_db(transaction=True)
async def test_http_goes_to_django_and_lifespan_is_answered() -> None:
    async with serving(application()) as host, httpx.AsyncClient() as client:
        response = await client.get(f"http://{host}/hello/", timeout=10)
    assert response.status_code == 200
    assert response.text == "hello"
