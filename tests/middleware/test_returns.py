"""Middleware returns what the application inside returned, as Channels' middleware does.

So a router's return value reaches the caller through any stack. Each test runs our classes
and Channels' (when installed).
"""

from __future__ import annotations

from typing import Any

import pytest

import gateway.middleware
from gateway.types import Message, Scope
from tests.layers.reference import IMPLEMENTATIONS, import_reference

pytestmark = pytest.mark.django_db(transaction=True)


class Returns:
    """An ASGI application that returns a fixed value."""

    def __init__(self, value: object) -> None:
        self.value = value

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> object:
        return self.value


async def _receive() -> Message:
    raise AssertionError("middleware must not receive")


async def _send(message: Message) -> None:
    raise AssertionError("middleware must not send")


def middleware(name: str) -> dict[str, Any]:
    """The middleware classes by name: ours, or Channels' when the reference is installed."""
    if name == "channels":
        auth = import_reference("channels.auth")
        security = import_reference("channels.security.websocket")
        sessions = import_reference("channels.sessions")
        base = import_reference("channels.middleware")
        return {
            "AuthMiddlewareStack": auth.AuthMiddlewareStack,
            "OriginValidator": security.OriginValidator,
            "SessionMiddlewareStack": sessions.SessionMiddlewareStack,
            "BaseMiddleware": base.BaseMiddleware,
        }
    return {name: getattr(gateway.middleware, name) for name in gateway.middleware.__all__}


def websocket_scope() -> Scope:
    return {"type": "websocket", "path": "/", "headers": [(b"origin", b"http://example.com")]}


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
async def test_origin_validator_and_auth_stack_return_the_value(name: str) -> None:
    classes = middleware(name)
    stack = classes["OriginValidator"](classes["AuthMiddlewareStack"](Returns("ws")), ["*"])
    assert await stack(websocket_scope(), _receive, _send) == "ws"


async def test_origin_validator_passes_other_scopes_and_their_value_through() -> None:
    # Channels raises ValueError for a scope that is not a WebSocket; ours lets it pass.
    validator = gateway.middleware.OriginValidator(Returns("http"), ["example.org"])
    assert await validator({"type": "http", "path": "/", "headers": []}, _receive, _send) == "http"


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
async def test_session_stack_returns_the_value(name: str) -> None:
    stack = middleware(name)["SessionMiddlewareStack"](Returns(3))
    assert await stack(websocket_scope(), _receive, _send) == 3


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
async def test_base_middleware_returns_the_value(name: str) -> None:
    class Adds(middleware(name)["BaseMiddleware"]):  # type: ignore[misc]
        async def __call__(self, scope: Scope, receive: Any, send: Any) -> Any:
            return await super().__call__(dict(scope, added=True), receive, send)

    assert await Adds(Returns("base"))(websocket_scope(), _receive, _send) == "base"
