"""`ChannelNameRouter`: one application per worker channel name."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.exceptions import RouteNotFound
from gateway.types import AnyASGIApp, Receive, Scope, Send
from routers.url import check_application


class ChannelNameRouter:
    """Sends each ``channel`` scope to the application configured for its channel name."""

    def __init__(self, application_mapping: Mapping[str, AnyASGIApp]) -> None:
        for name, application in application_mapping.items():
            check_application(application, f"ChannelNameRouter channel {name!r}")
        self.application_mapping = dict(application_mapping)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> Any:
        if "channel" not in scope:
            raise ValueError(
                "ChannelNameRouter got a scope without a 'channel' key; route only "
                f"'channel' scopes to it (this scope's type is {scope.get('type')!r})."
            )
        application = self.application_mapping.get(scope["channel"])
        if application is None:
            raise RouteNotFound(f"No application configured for channel name {scope['channel']!r}.")
        return await application(scope, receive, send)
