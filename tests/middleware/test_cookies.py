from __future__ import annotations

import pytest

from gateway.middleware import CookieMiddleware
from gateway.types import Message, Scope
from tests.middleware.support import call, capture, handshake, set_cookies, websocket_scope


async def cookies_for(*headers: tuple[bytes, bytes]) -> dict[str, str]:
    seen: list[Scope] = []
    await handshake(CookieMiddleware(capture(seen)), websocket_scope(*headers))
    cookies: dict[str, str] = seen[0]["cookies"]
    return cookies


async def test_parses_the_cookie_header() -> None:
    cookies = await cookies_for((b"cookie", b"sessionid=abc; theme=dark"))

    assert cookies == {"sessionid": "abc", "theme": "dark"}


async def test_no_cookie_header_gives_an_empty_dict() -> None:
    assert await cookies_for((b"host", b"example.com")) == {}


async def test_cookies_split_over_several_headers_are_joined() -> None:
    cookies = await cookies_for((b"cookie", b"a=1"), (b"cookie", b"b=2"))

    assert cookies == {"a": "1", "b": "2"}


async def test_malformed_cookie_header_does_not_crash() -> None:
    raw = b'=;;; junk; "unterminated; a=1; \xff\xfe=\x00; =x; b = 2 ;'
    cookies = await cookies_for((b"cookie", raw))

    assert cookies["a"] == "1"
    assert cookies["b"] == "2"


async def test_scope_without_headers_is_refused() -> None:
    with pytest.raises(ValueError, match="without headers"):
        await call(CookieMiddleware(capture([])), {"type": "mqtt"})


def test_set_cookie_adds_a_header_and_keeps_the_others() -> None:
    message: Message = {"type": "http.response.start", "status": 200}
    message["headers"] = ((b"content-type", b"text/plain"),)

    CookieMiddleware.set_cookie(message, "token", "v1", max_age=60, httponly=True)

    assert message["headers"][0] == (b"content-type", b"text/plain")
    [cookie] = set_cookies(message)
    assert cookie.startswith("token=v1;")
    assert "Max-Age=60" in cookie
    assert "HttpOnly" in cookie
    assert "Path=/" in cookie
    assert "SameSite=lax" in cookie


def test_delete_cookie_expires_it() -> None:
    message: Message = {"type": "http.response.start", "status": 200}

    CookieMiddleware.delete_cookie(message, "token", path="/app")

    [cookie] = set_cookies(message)
    assert cookie.startswith('token="";')
    assert "Max-Age=0" in cookie
    assert "01 Jan 1970" in cookie
    assert "Path=/app" in cookie
