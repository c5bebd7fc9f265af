"""`EmailToRouter`: picks an application by the recipient address of an ``email`` scope."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gateway.exceptions import RouteNotFound
from gateway.types import AnyASGIApp, Receive, Scope, Send
from routers.url import check_application, merge_url_route

__all__ = ["EmailRoute", "EmailToRouter", "address"]


@dataclass(frozen=True)
class EmailRoute:
    """One address pattern and the application for the recipients it matches."""

    pattern: str
    application: AnyASGIApp
    regex: re.Pattern[str]

    def match(self, recipient: str) -> dict[str, Any] | None:
        """The named groups when `recipient` matches the whole pattern, else None."""
        found = self.regex.fullmatch(recipient)
        if found is None:
            return None
        return {key: value for key, value in found.groupdict().items() if value is not None}


def address(pattern: str, application: AnyASGIApp) -> EmailRoute:
    """Route recipients matching the regular expression `pattern` (whole address, any case)."""
    check_application(application, f"address({pattern!r})")
    try:
        regex = re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        raise ValueError(f"address({pattern!r}): not a regular expression: {exc}") from None
    return EmailRoute(pattern, application, regex)


class EmailToRouter:
    """Routes an ``email`` scope by ``recipient`` to the first matching address pattern."""

    def __init__(self, routes: Sequence[EmailRoute], *, default: AnyASGIApp | None = None) -> None:
        for route in routes:
            if not isinstance(route, EmailRoute):
                raise TypeError(f"EmailToRouter takes address(...) routes, got {route!r}")
        if default is not None:
            check_application(default, "EmailToRouter default")
        self.routes = list(routes)
        self.default = default

    def resolve(
        self, recipient: str
    ) -> tuple[EmailRoute | None, AnyASGIApp, dict[str, Any]] | None:
        """(route or None for the default, application, kwargs), or None when nothing matches."""
        for route in self.routes:
            kwargs = route.match(recipient)
            if kwargs is None:
                continue
            if isinstance(route.application, EmailToRouter):
                inner = route.application.resolve(recipient)
                if inner is None:
                    continue  # a nested router that accepts nothing falls through
                return inner[0], inner[1], {**kwargs, **inner[2]}
            return route, route.application, kwargs
        if self.default is not None:
            return None, self.default, {}
        return None

    def accepts(self, recipient: str) -> bool:
        """Whether some route (or the default) takes mail for `recipient`."""
        return self.resolve(recipient) is not None

    async def aaccepts(self, recipient: str) -> bool:
        """`accepts` for async callers; routing is pure, so it never blocks."""
        return self.accepts(recipient)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> Any:
        recipient = scope.get("recipient")
        if not isinstance(recipient, str):
            raise ValueError("No 'recipient' key in email scope, cannot route by address.")
        found = self.resolve(recipient)
        if found is None:
            raise RouteNotFound(f"No route found for email recipient {recipient!r}.")
        _, application, kwargs = found
        url_route = merge_url_route(scope, (), kwargs)
        return await application({**scope, "url_route": url_route}, receive, send)
