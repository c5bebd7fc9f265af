"""Origin checks on WebSocket handshakes, against cross-site WebSocket hijacking."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any
from urllib.parse import ParseResult, urlparse

from django.utils.http import is_same_domain

from gateway.metrics import registry
from gateway.types import AnyASGIApp, Receive, Scope, Send

logger = logging.getLogger("gateway.security")

_DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}
# Refused before accept, the server answers the handshake with HTTP 403; the code is for
# test communicators and servers that report it ("policy violation").
DENIED_CLOSE_CODE = 1008


class OriginValidator:
    """Refuses WebSocket handshakes whose ``Origin`` matches none of ``allowed_origins``.

    A pattern is ``*`` (anything, even no Origin), a host (``example.com``; a leading dot as
    in ``.example.com`` also allows subdomains), or a scheme, host and optional port
    (``https://.example.com:8443``), which must all match. Other scope types pass through.
    """

    def __init__(self, application: AnyASGIApp, allowed_origins: Iterable[str]) -> None:
        self.application = application
        self.allowed_origins = list(allowed_origins)
        for pattern in self.allowed_origins:
            _check_pattern(pattern)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> Any:
        if scope["type"] != "websocket":
            return await self.application(scope, receive, send)
        origin = _origin_header(scope)
        if self.valid_origin(_parse_origin(origin)):
            return await self.application(scope, receive, send)
        logger.warning(
            "Refused WebSocket connection to %s from %s: origin %r is not allowed",
            scope.get("path", "?"),
            _client(scope),
            origin,
        )
        registry.inc("websocket", "rejected")
        return await _deny(receive, send)

    def get_allowed_origins(self) -> list[str]:
        """The patterns in force for this connection."""
        return self.allowed_origins

    def valid_origin(self, parsed_origin: ParseResult | None) -> bool:
        """Whether the parsed Origin (None when absent or unreadable) is allowed."""
        patterns = self.get_allowed_origins()
        if parsed_origin is None:
            return "*" in patterns
        return any(p == "*" or self.match_allowed_origin(parsed_origin, p) for p in patterns)

    def match_allowed_origin(self, parsed_origin: ParseResult, pattern: str) -> bool:
        """Whether the origin matches one pattern: host, or scheme, host and port."""
        if parsed_origin.hostname is None:
            return False
        if "://" not in pattern:
            # A bare host, as in ALLOWED_HOSTS: any scheme and port.
            host = urlparse("//" + pattern.lower()).hostname or pattern
            return is_same_domain(parsed_origin.hostname, host)
        parsed_pattern = urlparse(pattern.lower())
        return (
            parsed_pattern.scheme == parsed_origin.scheme
            and self.get_origin_port(parsed_pattern) == self.get_origin_port(parsed_origin)
            and is_same_domain(parsed_origin.hostname, parsed_pattern.hostname or "")
        )

    def get_origin_port(self, origin: ParseResult) -> int | None:
        """The explicit port, else the scheme's default, else None."""
        return origin.port if origin.port is not None else _DEFAULT_PORTS.get(origin.scheme)


class AllowedHostsOriginValidator(OriginValidator):
    """An ``OriginValidator`` allowing ``settings.ALLOWED_HOSTS``, read at each handshake."""

    def __init__(self, application: AnyASGIApp) -> None:
        super().__init__(application, ())

    def get_allowed_origins(self) -> list[str]:
        from django.conf import settings

        hosts = list(settings.ALLOWED_HOSTS)
        # Django's own DEBUG default for an empty ALLOWED_HOSTS, as Channels applies it.
        if settings.DEBUG and not hosts:
            return ["localhost", "127.0.0.1", "[::1]"]
        return hosts


def _origin_header(scope: Scope) -> str | None:
    origin = None
    for name, value in scope.get("headers", ()):
        if name.lower() == b"origin":
            origin = value.decode("latin1")  # the last one wins, as in Channels
    return origin


def _parse_origin(origin: str | None) -> ParseResult | None:
    if origin is None:
        return None
    try:
        parsed = urlparse(origin.strip())
        parsed.port  # noqa: B018 (raises ValueError on a malformed port)
    except ValueError:
        # An unreadable Origin counts as none: outside input never crashes the check.
        return None
    return parsed


def _check_pattern(pattern: str) -> None:
    try:
        urlparse(pattern if "://" in pattern else "//" + pattern).port  # noqa: B018
    except ValueError as exc:
        raise ValueError(f"OriginValidator: malformed allowed origin {pattern!r}") from exc


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "an unknown client"


async def _deny(receive: Receive, send: Send) -> None:
    # Take the handshake as a consumer would, then refuse it.
    message = await receive()
    if message["type"] == "websocket.connect":
        await send({"type": "websocket.close", "code": DENIED_CLOSE_CODE})
