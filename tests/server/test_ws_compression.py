"""WebSocket compression (permessage-deflate): off unless GATEWAY["HTTP"] turns it on."""

from __future__ import annotations

import pytest
from django.urls import path
from websockets.asyncio.client import connect

from gateway.conf import GatewaySettings
from gateway.consumers import AsyncWebsocketConsumer
from gateway.server import Gateway
from routers import ProtocolTypeRouter, URLRouter
from tests.server.test_gateway import http_url, start

pytestmark = pytest.mark.integration


class Echo(AsyncWebsocketConsumer):
    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        await self.send(text_data=text_data)


@pytest.mark.parametrize("deflate", [None, False, True])
async def test_compression_is_negotiated_only_when_turned_on(deflate: bool | None) -> None:
    http = {"PORT": 0} | ({} if deflate is None else {"WS_PER_MESSAGE_DEFLATE": deflate})
    app = ProtocolTypeRouter({"websocket": URLRouter([path("echo/", Echo.as_asgi())])})
    gateway = Gateway(app, settings=GatewaySettings({"HTTP": http, "ADAPTERS": {}}))
    task = await start(gateway)
    url = http_url(gateway.listeners).replace("http://", "ws://") + "/echo/"
    try:
        # The client offers permessage-deflate, as browsers do.
        async with connect(url, proxy=None, compression="deflate") as client:
            negotiated = client.response.headers.get("Sec-WebSocket-Extensions", "")
            await client.send("x" * 1000)
            assert await client.recv() == "x" * 1000
    finally:
        gateway.stop()
        assert await task == 0
    assert ("permessage-deflate" in negotiated) is bool(deflate)
