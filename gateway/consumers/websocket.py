"""WebSocket consumers, sync and async, raw and JSON, with Channels' API."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from asgiref.sync import async_to_sync

from gateway.consumers.base import AsyncConsumer, SyncConsumer
from gateway.db import aclose_old_connections
from gateway.exceptions import AcceptConnection, DenyConnection, StopConsumer
from gateway.types import Message

Headers = Iterable[tuple[bytes, bytes]]


def _accept_message(subprotocol: str | None, headers: Headers | None) -> Message:
    message: Message = {"type": "websocket.accept", "subprotocol": subprotocol}
    if headers:
        message["headers"] = list(headers)
    return message


def _frame_message(text_data: str | None, bytes_data: bytes | None) -> Message:
    if text_data is not None:
        return {"type": "websocket.send", "text": text_data}
    if bytes_data is not None:
        return {"type": "websocket.send", "bytes": bytes_data}
    raise ValueError("You must pass one of bytes_data or text_data.")


def _close_message(code: int | bool | None, reason: str | None) -> Message:
    message: Message = {"type": "websocket.close"}
    # send(close=True) passes True through: close without naming a code.
    if code is not None and code is not True:
        message["code"] = int(code)
    if reason:
        message["reason"] = reason
    return message


class WebsocketConsumer(SyncConsumer):
    """WebSocket consumer with plain (sync) hooks, run in a worker thread."""

    def websocket_connect(self, message: Message) -> None:
        """Join ``groups``, then call `connect`."""
        if self.groups:
            async_to_sync(self._join_groups)()
        try:
            self.connect()
        except AcceptConnection:
            self.accept()
        except DenyConnection:
            self.close()

    def connect(self) -> None:
        """Called when the client opens the socket; accepts it unless overridden."""
        self.accept()

    def accept(self, subprotocol: str | None = None, headers: Headers | None = None) -> None:
        """Accept the connection, optionally choosing a subprotocol and adding headers."""
        super().send(_accept_message(subprotocol, headers))

    def websocket_receive(self, message: Message) -> None:
        """Pass a received frame to `receive`."""
        if message.get("text") is not None:
            self.receive(text_data=message["text"])
        else:
            self.receive(bytes_data=message["bytes"])

    def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Called with each frame from the client."""

    def send(  # type: ignore[override]
        self,
        text_data: str | None = None,
        bytes_data: bytes | None = None,
        close: bool | int = False,
    ) -> None:
        """Send a text or binary frame, then close if ``close`` is true (or a close code)."""
        super().send(_frame_message(text_data, bytes_data))
        if close:
            self.close(close)

    def close(self, code: int | bool | None = None, reason: str | None = None) -> None:
        """Close the connection (or refuse it, before `accept`)."""
        super().send(_close_message(code, reason))

    def websocket_disconnect(self, message: Message) -> None:
        """Leave ``groups``, call `disconnect` and stop the consumer."""
        if self._joined_groups:
            async_to_sync(self._leave_groups)()
        self.disconnect(message.get("code", 1005))
        raise StopConsumer

    def disconnect(self, code: int) -> None:
        """Called when the socket has closed, with its close code."""


class JsonWebsocketConsumer(WebsocketConsumer):
    """`WebsocketConsumer` that decodes and encodes JSON text frames."""

    def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any
    ) -> None:
        """Decode a text frame and pass it to `receive_json`."""
        if text_data is None:
            raise ValueError("No text section for incoming WebSocket frame!")
        self.receive_json(self.decode_json(text_data), **kwargs)

    def receive_json(self, content: Any, **kwargs: Any) -> None:
        """Called with each decoded JSON message."""

    def send_json(self, content: Any, close: bool | int = False) -> None:
        """Encode ``content`` as JSON and send it as a text frame."""
        self.send(text_data=self.encode_json(content), close=close)

    @classmethod
    def decode_json(cls, text_data: str) -> Any:
        """Parse a text frame; override for another decoder."""
        return json.loads(text_data)

    @classmethod
    def encode_json(cls, content: Any) -> str:
        """Serialise content for a text frame; override for another encoder."""
        return json.dumps(content)


class AsyncWebsocketConsumer(AsyncConsumer):
    """WebSocket consumer with ``async`` hooks."""

    async def websocket_connect(self, message: Message) -> None:
        """Join ``groups``, then call `connect`."""
        await self._join_groups()
        try:
            await self.connect()
        except AcceptConnection:
            await self.accept()
        except DenyConnection:
            await self.close()

    async def connect(self) -> None:
        """Called when the client opens the socket; accepts it unless overridden."""
        await self.accept()

    async def accept(self, subprotocol: str | None = None, headers: Headers | None = None) -> None:
        """Accept the connection, optionally choosing a subprotocol and adding headers."""
        await super().send(_accept_message(subprotocol, headers))

    async def websocket_receive(self, message: Message) -> None:
        """Pass a received frame to `receive`."""
        if message.get("text") is not None:
            await self.receive(text_data=message["text"])
        else:
            await self.receive(bytes_data=message["bytes"])

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Called with each frame from the client."""

    async def send(  # type: ignore[override]
        self,
        text_data: str | None = None,
        bytes_data: bytes | None = None,
        close: bool | int = False,
    ) -> None:
        """Send a text or binary frame, then close if ``close`` is true (or a close code)."""
        await super().send(_frame_message(text_data, bytes_data))
        if close:
            await self.close(close)

    async def close(self, code: int | bool | None = None, reason: str | None = None) -> None:
        """Close the connection (or refuse it, before `accept`)."""
        await super().send(_close_message(code, reason))

    async def websocket_disconnect(self, message: Message) -> None:
        """Leave ``groups``, call `disconnect` and stop the consumer."""
        await self._leave_groups()
        await self.disconnect(message.get("code", 1005))
        await aclose_old_connections()
        raise StopConsumer

    async def disconnect(self, code: int) -> None:
        """Called when the socket has closed, with its close code."""


class AsyncJsonWebsocketConsumer(AsyncWebsocketConsumer):
    """`AsyncWebsocketConsumer` that decodes and encodes JSON text frames."""

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any
    ) -> None:
        """Decode a text frame and pass it to `receive_json`."""
        if text_data is None:
            raise ValueError("No text section for incoming WebSocket frame!")
        await self.receive_json(await self.decode_json(text_data), **kwargs)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """Called with each decoded JSON message."""

    async def send_json(self, content: Any, close: bool | int = False) -> None:
        """Encode ``content`` as JSON and send it as a text frame."""
        await self.send(text_data=await self.encode_json(content), close=close)

    @classmethod
    async def decode_json(cls, text_data: str) -> Any:
        """Parse a text frame; override for another decoder."""
        return json.loads(text_data)

    @classmethod
    async def encode_json(cls, content: Any) -> str:
        """Serialise content for a text frame; override for another encoder."""
        return json.dumps(content)
