from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.sessions.models import Session

from gateway.middleware import SessionMiddleware, SessionMiddlewareStack, logout
from gateway.types import ASGIApp, Receive, Scope, Send
from tests.middleware.support import (
    call,
    handshake,
    http_request,
    http_scope,
    set_cookies,
    websocket_scope,
)

pytestmark = pytest.mark.django_db(transaction=True)


def http_app(status: int = 200, **session_data: object) -> ASGIApp:
    """An HTTP app that stores ``session_data`` in the session, then answers ``status``."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        for key, value in session_data.items():
            await scope["session"].aset(key, value)
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


def session_id(cookie: str) -> str:
    name, _, rest = cookie.partition("=")
    assert name == settings.SESSION_COOKIE_NAME
    return rest.split(";", 1)[0]


@sync_to_async
def stored(session_key: str) -> dict[str, object] | None:
    session = Session.objects.filter(session_key=session_key).first()
    return None if session is None else session.get_decoded()


async def test_modified_session_is_saved_and_its_cookie_set() -> None:
    start = await http_request(SessionMiddlewareStack(http_app(device="d-17")), http_scope())

    [cookie] = set_cookies(start)
    assert f"Max-Age={settings.SESSION_COOKIE_AGE}" in cookie
    assert "HttpOnly" in cookie
    assert await stored(session_id(cookie)) == {"device": "d-17"}


async def test_untouched_session_sets_no_cookie() -> None:
    start = await http_request(SessionMiddlewareStack(http_app()), http_scope())

    assert set_cookies(start) == []
    assert await sync_to_async(Session.objects.count)() == 0


async def test_server_error_leaves_the_session_unsaved() -> None:
    start = await http_request(SessionMiddlewareStack(http_app(500, device="d-1")), http_scope())

    assert set_cookies(start) == []
    assert await sync_to_async(Session.objects.count)() == 0


async def test_existing_session_is_loaded_from_the_cookie(session_cookie: str) -> None:
    header = (b"cookie", f"{settings.SESSION_COOKIE_NAME}={session_cookie}".encode())

    start = await http_request(SessionMiddlewareStack(http_app(theme="dark")), http_scope(header))

    assert [session_id(c) for c in set_cookies(start)] == [session_cookie]
    data = await stored(session_cookie)
    assert data is not None
    assert data["theme"] == "dark"
    assert "_auth_user_id" in data


async def test_emptied_session_deletes_the_cookie(session_cookie: str) -> None:
    header = (b"cookie", f"{settings.SESSION_COOKIE_NAME}={session_cookie}".encode())

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await logout(scope)
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body"})

    start = await http_request(SessionMiddlewareStack(app), http_scope(header))

    [cookie] = set_cookies(start)
    assert cookie.startswith(f'{settings.SESSION_COOKIE_NAME}="";')
    assert "Max-Age=0" in cookie
    assert await stored(session_cookie) is None


async def test_websocket_session_is_not_saved_by_the_middleware() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await scope["session"].aset("seen", True)
        await send({"type": "websocket.accept"})

    answer = await handshake(SessionMiddlewareStack(app), websocket_scope())

    assert answer == {"type": "websocket.accept"}
    assert await sync_to_async(Session.objects.count)() == 0


async def test_inner_session_middleware_defers_to_the_outer_one() -> None:
    seen: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope)
        await http_app(n=1)(scope, receive, send)

    stack = SessionMiddlewareStack(SessionMiddleware(app))
    start = await http_request(stack, http_scope())

    [cookie] = set_cookies(start)
    assert seen[0]["session"].session_key == session_id(cookie)
    assert await stored(session_id(cookie)) == {"n": 1}


async def test_session_middleware_needs_cookie_middleware() -> None:
    with pytest.raises(ValueError, match="inside CookieMiddleware"):
        await call(SessionMiddleware(http_app()), http_scope())
