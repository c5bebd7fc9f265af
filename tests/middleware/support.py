"""Scopes and a driver for the middleware tests."""

from __future__ import annotations

from typing import Any

from asgiref.testing import ApplicationCommunicator

from gateway.types import ASGIApp, Message, Receive, Scope, Send

TIMEOUT = 10
# asgiref's testing module is untyped; one Any here keeps the helpers below typed.
Communicator: Any = ApplicationCommunicator


def websocket_scope(*headers: tuple[bytes, bytes]) -> dict[str, Any]:
    return {
        "type": "websocket",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "path": "/ws/",
        "headers": list(headers),
        "client": ("127.0.0.1", 50000),
        "subprotocols": [],
    }


def http_scope(*headers: tuple[bytes, bytes]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "method": "GET",
        "path": "/",
        "headers": list(headers),
    }


async def handshake(app: ASGIApp, scope: Scope) -> Message:
    """Send ``websocket.connect`` and return the application's answer."""
    communicator = Communicator(app, scope)
    await communicator.send_input({"type": "websocket.connect"})
    answer: Message = await communicator.receive_output(TIMEOUT)
    await communicator.wait(TIMEOUT)
    return answer


async def http_request(app: ASGIApp, scope: Scope) -> Message:
    """Send one ``http.request`` and return the ``http.response.start`` message."""
    communicator = Communicator(app, scope)
    await communicator.send_input({"type": "http.request", "body": b""})
    start: Message = await communicator.receive_output(TIMEOUT)
    await communicator.receive_output(TIMEOUT)
    await communicator.wait(TIMEOUT)
    return start


def capture(seen: list[Scope]) -> ASGIApp:
    """A WebSocket app that records its scope and accepts the connection."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        seen.append(scope)
        await send({"type": "websocket.accept"})

    return app


def set_cookies(message: Message) -> list[str]:
    return [v.decode("latin1") for k, v in message.get("headers", ()) if k.lower() == b"set-cookie"]


async def call(app: ASGIApp, scope: Scope) -> list[Message]:
    """Run ``app`` in this task (so its exceptions surface at once); return what it sent."""
    sent: list[Message] = []

    async def receive() -> Message:
        return {
            "type": f"{scope['type']}.connect" if scope["type"] == "websocket" else "http.request"
        }

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent
