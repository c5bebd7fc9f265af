"""Cookies: parsed from the request headers, written onto HTTP response messages."""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from typing import Any, Literal

from django.http.cookie import parse_cookie

from gateway.types import AnyASGIApp, Message, Receive, Scope, Send


class InvalidSameSite(ValueError, AssertionError):
    """A SameSite value other than lax, none or strict (``SESSION_COOKIE_SAMESITE``).

    Django raises ValueError for it and Channels AssertionError; this is both, so code that
    catches either keeps working.
    """


class CookieMiddleware:
    """Puts the request's cookies in ``scope["cookies"]``, shaped like ``request.COOKIES``."""

    def __init__(self, inner: AnyASGIApp) -> None:
        self.inner = inner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> Any:
        if "headers" not in scope:
            raise ValueError(
                "CookieMiddleware was given a scope without headers; wrap only HTTP or "
                "WebSocket applications with it."
            )
        cookies = parse_cookie(_cookie_header(scope["headers"]))
        return await self.inner(dict(scope, cookies=cookies), receive, send)

    @classmethod
    def set_cookie(
        cls,
        message: Message,
        key: str,
        value: str = "",
        max_age: float | datetime.timedelta | None = None,
        expires: str | datetime.datetime | None = None,
        path: str | None = "/",
        domain: str | None = None,
        secure: bool | None = False,
        httponly: bool | None = False,
        samesite: str | Literal[False] | None = "lax",
    ) -> None:
        """Add a ``Set-Cookie`` header to an ``http.response.start`` message."""
        _check_samesite(samesite)
        response = _response()
        response.set_cookie(
            key, value, max_age, expires, path, domain, bool(secure), bool(httponly), samesite
        )
        _append_set_cookie(message, response)

    @classmethod
    def delete_cookie(
        cls,
        message: Message,
        key: str,
        path: str = "/",
        domain: str | None = None,
        samesite: str | Literal[False] | None = None,
    ) -> None:
        """Add a ``Set-Cookie`` header that expires the cookie ``key`` on the client."""
        _check_samesite(samesite)
        response = _response()
        response.delete_cookie(key, path=path, domain=domain, samesite=samesite)
        _append_set_cookie(message, response)


def _check_samesite(samesite: str | Literal[False] | None) -> None:
    if samesite and samesite.lower() not in ("lax", "none", "strict"):
        raise InvalidSameSite(
            f"samesite must be 'lax', 'none' or 'strict', got {samesite!r} (check the"
            " SESSION_COOKIE_SAMESITE setting)"
        )


def _cookie_header(headers: Iterable[tuple[bytes, bytes]]) -> str:
    # HTTP/2 clients may split cookies over several headers; RFC 9113 joins them with "; ".
    return "; ".join(value.decode("latin1") for name, value in headers if name.lower() == b"cookie")


def _response() -> Any:
    # Django's response already knows every cookie attribute rule (expiry, SameSite,
    # __Host- prefixes); borrow it rather than restate them. Its stubs are narrower than
    # what it accepts (any-case SameSite, path None), hence Any.
    from django.http import HttpResponse

    return HttpResponse()


def _append_set_cookie(message: Message, response: Any) -> None:
    # ASGI allows any iterable of header pairs, so rebuild a list rather than append in place.
    headers = list(message.get("headers", ()))
    for morsel in response.cookies.values():
        headers.append((b"Set-Cookie", morsel.output(header="").strip().encode("latin1")))
    message["headers"] = headers
