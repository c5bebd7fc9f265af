"""`ProtocolTypeRouter`: one application per scope type."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.exceptions import UnknownProtocol
from gateway.types import AnyASGIApp, Receive, Scope, Send
from routers.url import check_application


class ProtocolTypeRouter:
    """Sends each scope to the application configured for its ``type``."""

    def __init__(self, application_mapping: Mapping[str, AnyASGIApp]) -> None:
        for name, application in application_mapping.items():
            check_application(application, f"ProtocolTypeRouter type {name!r}")
        self.application_mapping = dict(application_mapping)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> Any:
        """Run the application for the scope's type and return what it returns."""
        application = self.application_mapping.get(scope["type"])
        if application is not None:
            return await application(scope, receive, send)
        if scope["type"] != "lifespan":
            configured = ", ".join(repr(name) for name in self.application_mapping) or "none"
            raise UnknownProtocol(
                f"No application configured for scope type {scope['type']!r} "
                f"(configured types: {configured})."
            )
        # Django's ASGI handler refuses lifespan scopes, so answer them here.
        return await serve_lifespan(receive, send)


async def serve_lifespan(receive: Receive, send: Send) -> None:
    """Complete lifespan startup and shutdown for an application with nothing to do."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
