"""`WebsocketCommunicator`: open, talk to and close a WebSocket application in-process."""

from __future__ import annotations

import json
from typing import Any

from gateway.testing.application import ApplicationCommunicator
from gateway.testing.http import Headers, request_scope
from gateway.types import ASGIApp


class WebsocketCommunicator(ApplicationCommunicator):
    """Runs an application for one WebSocket connection, with frame-level helpers."""

    def __init__(
        self,
        application: ASGIApp,
        path: str,
        headers: Headers | None = None,
        subprotocols: list[str] | None = None,
        spec_version: str | None = None,
    ) -> None:
        scope = request_scope("websocket", path, headers)
        scope.update({"scheme": "ws", "subprotocols": list(subprotocols or [])})
        if spec_version:
            scope["spec_version"] = spec_version
            scope["asgi"]["spec_version"] = spec_version
        super().__init__(application, scope)
        self.response_headers: list[tuple[bytes, bytes]] | None = None

    async def connect(self, timeout: float = 1) -> tuple[bool, Any]:
        """Open the socket: ``(True, subprotocol)`` when accepted, ``(False, code)`` if not."""
        await self.send_input({"type": "websocket.connect"})
        response = await self.receive_output(timeout)
        if response["type"] == "websocket.close":
            return (False, response.get("code", 1000))
        assert response["type"] == "websocket.accept", f"Expected accept or close, got {response}"
        self.response_headers = response.get("headers", [])
        return (True, response.get("subprotocol"))

    async def send_to(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Send one text or binary frame to the application."""
        assert (text_data is None) != (bytes_data is None), (
            "You must supply exactly one of text_data or bytes_data"
        )
        if text_data is not None:
            assert isinstance(text_data, str), "The text_data argument must be a str"
            await self.send_input({"type": "websocket.receive", "text": text_data})
        else:
            assert isinstance(bytes_data, bytes), "The bytes_data argument must be bytes"
            await self.send_input({"type": "websocket.receive", "bytes": bytes_data})

    async def send_json_to(self, data: Any) -> None:
        """Send ``data`` encoded as JSON in a text frame."""
        await self.send_to(text_data=json.dumps(data))

    async def receive_from(self, timeout: float = 1) -> str | bytes:
        """Return the payload of the next frame the application sends (fails on a close)."""
        response = await self.receive_output(timeout)
        assert response["type"] == "websocket.send", (
            f"Expected type 'websocket.send', but was {response['type']!r}"
        )
        text, data = response.get("text"), response.get("bytes")
        assert (text is None) != (data is None), "The frame needs exactly one of text or bytes"
        if text is not None:
            assert isinstance(text, str), f"Text frame payload is not str: {type(text)}"
            return text
        assert isinstance(data, bytes), f"Binary frame payload is not bytes: {type(data)}"
        return data

    async def receive_json_from(self, timeout: float = 1) -> Any:
        """Return the next frame decoded as JSON (it must be a text frame)."""
        payload = await self.receive_from(timeout)
        assert isinstance(payload, str), f"JSON data is not a text frame, it is {type(payload)}"
        return json.loads(payload)

    async def disconnect(self, code: int = 1000, timeout: float = 1) -> None:
        """Close the socket from the client side and wait for the application to finish."""
        await self.send_input({"type": "websocket.disconnect", "code": code})
        await self.wait(timeout)
