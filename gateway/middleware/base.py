"""The base class of scope-adding middleware."""

from __future__ import annotations

from gateway.types import ASGIApp, Receive, Scope, Send


class BaseMiddleware:
    """Wraps an inner ASGI application and hands it a copy of the scope.

    One instance serves every connection, so subclasses keep per-connection state in the
    scope, never on ``self``.
    """

    def __init__(self, inner: ASGIApp) -> None:
        self.inner = inner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # A copy, so what this layer adds never leaks upstream to the caller's scope.
        scope = dict(scope)
        await self.inner(scope, receive, send)
