"""The base class of scope-adding middleware."""

from __future__ import annotations

from typing import Any

from gateway.types import AnyASGIApp, Receive, Scope, Send


class BaseMiddleware:
    """Wraps an inner ASGI application and hands it a copy of the scope.

    One instance serves every connection, so subclasses keep per-connection state in the
    scope, never on ``self``.
    """

    def __init__(self, inner: AnyASGIApp) -> None:
        self.inner = inner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> Any:
        # A copy, so what this layer adds never leaks upstream to the caller's scope.
        scope = dict(scope)
        return await self.inner(scope, receive, send)
