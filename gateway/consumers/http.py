"""`AsyncHttpConsumer`: answer an HTTP request from a consumer, Channels' API."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from gateway.consumers.base import AsyncConsumer
from gateway.db import aclose_old_connections
from gateway.exceptions import StopConsumer
from gateway.types import Message

HeaderValue = str | bytes
Headers = Mapping[HeaderValue, HeaderValue] | Iterable[tuple[HeaderValue, HeaderValue]]


def _as_bytes(value: HeaderValue) -> bytes:
    return value.encode("latin-1") if isinstance(value, str) else value


def _header_list(headers: Headers | None) -> list[tuple[bytes, bytes]]:
    if headers is None:
        return []
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return [(_as_bytes(name), _as_bytes(value)) for name, value in pairs]


class AsyncHttpConsumer(AsyncConsumer):
    """HTTP consumer: collects the request body, then calls `handle` with it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.body: list[bytes] = []

    async def send_headers(self, *, status: int = 200, headers: Headers | None = None) -> None:
        """Start the response; headers are a dict or a list of pairs (str or bytes)."""
        await self.send(
            {"type": "http.response.start", "status": status, "headers": _header_list(headers)}
        )

    async def send_body(self, body: bytes, *, more_body: bool = False) -> None:
        """Send (part of) the response body; ``more_body=True`` keeps the response open."""
        if not isinstance(body, bytes):
            raise TypeError(f"The response body must be bytes, not {type(body).__name__}.")
        await self.send({"type": "http.response.body", "body": body, "more_body": more_body})

    async def send_response(self, status: int, body: bytes, **kwargs: Any) -> None:
        """Send a whole response at once: `send_headers` then `send_body`."""
        await self.send_headers(status=status, **kwargs)
        await self.send_body(body)

    async def handle(self, body: bytes) -> None:
        """Called with the whole request body; answer with the ``send_*`` methods."""
        raise NotImplementedError("Subclasses of AsyncHttpConsumer must provide a handle() method.")

    async def disconnect(self) -> None:
        """Called once the request is over or the client left; do not send from here."""

    async def http_request(self, message: Message) -> None:
        """Collect body chunks; call `handle` once the body is complete."""
        self.body.append(message.get("body", b""))
        if message.get("more_body"):
            return
        try:
            await self.handle(b"".join(self.body))
        finally:
            await self.disconnect()
        raise StopConsumer

    async def http_disconnect(self, message: Message) -> None:
        """The client went away: let `disconnect` clean up and stop the consumer."""
        await self.disconnect()
        await aclose_old_connections()
        raise StopConsumer
