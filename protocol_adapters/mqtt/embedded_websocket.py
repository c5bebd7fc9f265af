"""MQTT over WebSocket for the embedded broker: a websockets connection as an asyncio
transport, so the same `Connection` protocol serves TCP, TLS and WebSocket clients."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from protocol_adapters.mqtt.embedded_connections import Connection

__all__ = ["serve_websocket"]


class _WebSocketTransport(asyncio.Transport):
    """Writes go through a queue to one sender task; reading pauses with an event."""

    def __init__(self, websocket: ServerConnection) -> None:
        super().__init__()
        self.websocket = websocket
        self.readable = asyncio.Event()
        self.readable.set()
        self._out: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._pending = 0
        self._closing = False
        self._sender = asyncio.get_running_loop().create_task(self._send_all())

    async def _send_all(self) -> None:
        while (data := await self._out.get()) is not None:
            self._pending -= len(data)
            with contextlib.suppress(ConnectionClosed):
                await self.websocket.send(data)
        await self.websocket.close()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return self.websocket.remote_address
        return default

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._closing:
            self._pending += len(data)
            self._out.put_nowait(bytes(data))

    def get_write_buffer_size(self) -> int:
        return self._pending

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if not self._closing:
            self._closing = True
            self._out.put_nowait(None)

    def abort(self) -> None:
        self._closing = True
        self._sender.cancel()
        self.websocket.transport.abort()

    def pause_reading(self) -> None:
        self.readable.clear()

    def resume_reading(self) -> None:
        self.readable.set()


async def serve_websocket(websocket: ServerConnection, connection: Connection) -> None:
    """Feed a WebSocket's binary messages to `connection` until either side closes."""
    transport = _WebSocketTransport(websocket)
    connection.connection_made(transport)
    try:
        while not connection.lost:
            await transport.readable.wait()
            message = await websocket.recv()
            if not isinstance(message, bytes):
                break  # MQTT over WebSocket is binary frames only
            connection.data_received(message)
    except ConnectionClosed:
        pass
    finally:
        connection.connection_lost(None)
        if connection.task is not None:
            await asyncio.shield(connection.task)
        transport.close()
