"""The origin check against a real uvicorn server and a real WebSocket client."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import uvicorn
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Origin

from gateway.middleware import OriginValidator
from gateway.types import ASGIApp, Receive, Scope, Send

pytestmark = pytest.mark.integration


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()
    await send({"type": "websocket.accept"})
    while (message := await receive())["type"] == "websocket.receive":
        await send({"type": "websocket.send", "text": message.get("text")})


@asynccontextmanager
async def serving(app: ASGIApp) -> AsyncIterator[int]:
    """Run ``app`` on uvicorn on a free 127.0.0.1 port; yield the port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="warning"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(30):
            while not server.started:
                await asyncio.sleep(0.02)
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        await task
        sock.close()


async def test_refused_origin_gets_http_403() -> None:
    app = OriginValidator(echo, ["https://dashboard.example.com"])

    async with serving(app) as port:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(
                f"ws://127.0.0.1:{port}/ws/", origin=Origin("https://evil.example"), proxy=None
            ):
                pass

    assert refused.value.response.status_code == 403


async def test_allowed_origin_connects() -> None:
    app = OriginValidator(echo, ["https://dashboard.example.com"])

    async with (
        serving(app) as port,
        connect(
            f"ws://127.0.0.1:{port}/ws/",
            origin=Origin("https://dashboard.example.com"),
            proxy=None,
        ) as websocket,
    ):
        await websocket.send("ping")
        assert await websocket.recv() == "ping"
