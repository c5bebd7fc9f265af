"""A tiny line protocol over TCP, to prove the adapter interface end to end.

Each line a client sends becomes one "line" scope with a `line.message` event; every
`line.reply` the application sends is written back as a line. A failing application gets
"error" written back, and the connection stays open.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gateway.adapters import AdapterHealth, Listener, ProtocolAdapter
from gateway.types import Message

KNOWN_OPTIONS = {"HOST", "PORT", "STOP_MARKER", "FAIL_START"}


class LineAdapter(ProtocolAdapter):
    """One scope per received line; `line.reply` answers are written back."""

    protocol = "line"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._server: asyncio.Server | None = None
        self._clients: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> list[str]:
        errors = [f"unknown option {key!r}" for key in options if key not in KNOWN_OPTIONS]
        port = options.get("PORT", 0)
        if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
            errors.append(f"PORT must be an integer 0-65535, got {port!r}")
        return errors

    async def start(self) -> list[Listener]:
        options = self.context.options
        if options.get("FAIL_START"):
            raise OSError("refusing to start, as configured")
        host = options.get("HOST", "127.0.0.1")
        self._server = await asyncio.start_server(self._serve_client, host, options.get("PORT", 0))
        address = self._server.sockets[0].getsockname()
        return [Listener("line", f"{address[0]}:{address[1]}")]

    async def stop(self, timeout: float) -> None:
        if self._server is not None:
            self._server.close()
        for writer in self._clients.values():
            writer.close()
        if self._clients:
            await asyncio.wait(list(self._clients), timeout=timeout)
        marker = self.context.options.get("STOP_MARKER")
        if marker:
            # A few bytes on local disk; not worth a thread.
            Path(marker).write_text(f"stopped {self.context.name}\n")  # noqa: ASYNC240

    def health(self) -> AdapterHealth:
        return AdapterHealth("ok", f"{len(self._clients)} client(s)")

    async def _serve_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients[task] = writer
        try:
            while line := await reader.readline():
                await self._handle(line.decode().rstrip("\r\n"), writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            del self._clients[task]
            writer.close()

    async def _handle(self, text: str, writer: asyncio.StreamWriter) -> None:
        metrics = self.context.metrics
        metrics.inc(self.protocol, "received")
        events: list[Message] = [{"type": "line.message", "text": text}]

        async def receive() -> Message:
            if events:
                return events.pop()
            await asyncio.Future()  # nothing more will come for this scope
            raise AssertionError("unreachable")

        async def send(message: Message) -> None:
            if message["type"] == "line.reply":
                writer.write(message["text"].encode() + b"\n")

        scope = {"type": "line", "asgi": {"version": "3.0"}, "adapter": self.context.name}
        try:
            await self.context.app(scope, receive, send)
        except Exception:
            metrics.inc(self.protocol, "failed")
            writer.write(b"error\n")
        else:
            metrics.inc(self.protocol, "handled")
        with contextlib.suppress(ConnectionError):
            await writer.drain()
