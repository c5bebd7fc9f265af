from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, SESSION_KEY
from django.contrib.auth.models import AnonymousUser, User
from django.contrib.auth.signals import user_logged_in, user_logged_out
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.test import override_settings

from gateway.db import database_sync_to_async
from gateway.middleware import (
    AuthMiddleware,
    AuthMiddlewareStack,
    CookieMiddleware,
    get_user,
    login,
    logout,
)
from gateway.middleware.auth import UserLazyObject
from gateway.testing import WebsocketCommunicator
from gateway.types import ASGIApp, Receive, Scope, Send
from tests.middleware.support import TIMEOUT, call, capture, handshake, websocket_scope

pytestmark = pytest.mark.django_db(transaction=True)

MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"


def cookie_header(session_key: str) -> tuple[bytes, bytes]:
    return (b"cookie", f"{settings.SESSION_COOKIE_NAME}={session_key}".encode())


@sync_to_async
def stored_session(session_key: str) -> dict[str, object] | None:
    session = Session.objects.filter(session_key=session_key).first()
    return None if session is None else session.get_decoded()


@sync_to_async
def anonymous_session_with(**data: object) -> str:
    store = SessionStore()
    store.update(data)
    store.save()
    assert store.session_key is not None
    return store.session_key


async def connect_with_auth(app: ASGIApp, *headers: tuple[bytes, bytes]) -> Scope:
    """Run ``app`` behind AuthMiddlewareStack and return the scope it was given."""
    seen: list[Scope] = []

    async def recorder(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope)
        await app(scope, receive, send)

    await handshake(AuthMiddlewareStack(recorder), websocket_scope(*headers))
    return seen[0]


async def test_logged_in_cookie_gives_the_user(user: User, session_cookie: str) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        who = scope["user"]
        await send({"type": "websocket.send", "text": f"{who.is_authenticated} {who.pk}"})
        await receive()

    communicator = WebsocketCommunicator(
        AuthMiddlewareStack(app), "/ws/", headers=[cookie_header(session_cookie)]
    )
    connected, _ = await communicator.connect(TIMEOUT)

    assert connected
    assert await communicator.receive_from(TIMEOUT) == f"True {user.pk}"
    await communicator.disconnect(timeout=TIMEOUT)


async def test_the_session_is_the_cookies_session(session_cookie: str) -> None:
    scope = await connect_with_auth(capture([]), cookie_header(session_cookie))

    assert scope["session"].session_key == session_cookie
    assert scope["user"].is_authenticated


async def test_no_cookie_gives_an_anonymous_user() -> None:
    scope = await connect_with_auth(capture([]))

    assert scope["user"].is_anonymous
    assert isinstance(scope["user"], AnonymousUser)


async def test_unknown_session_key_gives_an_anonymous_user() -> None:
    scope = await connect_with_auth(capture([]), cookie_header("x" * 32))

    assert scope["user"].is_anonymous


async def test_password_change_ends_the_session(user: User, session_cookie: str) -> None:
    user.set_password("another horse")
    await user.asave()

    scope = await connect_with_auth(capture([]), cookie_header(session_cookie))

    assert scope["user"].is_anonymous
    assert await stored_session(session_cookie) is None


async def test_session_from_a_removed_backend_is_anonymous(session_cookie: str) -> None:
    with override_settings(AUTHENTICATION_BACKENDS=["tests.nowhere.Backend"]):
        scope = await connect_with_auth(capture([]), cookie_header(session_cookie))

    assert scope["user"].is_anonymous


async def test_login_from_a_websocket_cycles_the_key_and_stores_the_user(user: User) -> None:
    anonymous_key = await anonymous_session_with(cart="3 sensors")
    logins: list[object] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await login(scope, user)
        await database_sync_to_async(scope["session"].save)()
        await send({"type": "websocket.accept"})

    def on_login(sender: object, user: User, **kwargs: object) -> None:
        logins.append(user)

    user_logged_in.connect(on_login)
    try:
        scope = await connect_with_auth(app, cookie_header(anonymous_key))
    finally:
        user_logged_in.disconnect(on_login)

    new_key = scope["session"].session_key
    assert new_key != anonymous_key
    assert await stored_session(anonymous_key) is None
    assert await stored_session(new_key) == {
        "cart": "3 sensors",
        SESSION_KEY: str(user.pk),
        BACKEND_SESSION_KEY: MODEL_BACKEND,
        "_auth_user_hash": user.get_session_auth_hash(),
    }
    assert scope["user"] == user
    assert logins == [user]
    await user.arefresh_from_db()
    assert user.last_login is not None


async def test_login_over_another_users_session_starts_afresh(session_cookie: str) -> None:
    bob = await User.objects.acreate_user("bob", password="pw")

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await login(scope, bob, backend=MODEL_BACKEND)
        await database_sync_to_async(scope["session"].save)()
        await send({"type": "websocket.accept"})

    scope = await connect_with_auth(app, cookie_header(session_cookie))

    stored = await stored_session(scope["session"].session_key)
    assert stored is not None
    assert stored[SESSION_KEY] == str(bob.pk)
    assert await stored_session(session_cookie) is None


async def test_logout_from_a_websocket_deletes_the_session(user: User, session_cookie: str) -> None:
    logouts: list[object] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        assert scope["user"].is_authenticated
        await logout(scope)
        await send({"type": "websocket.accept"})

    def on_logout(sender: object, user: User, **kwargs: object) -> None:
        logouts.append(user)

    user_logged_out.connect(on_logout)
    try:
        scope = await connect_with_auth(app, cookie_header(session_cookie))
    finally:
        user_logged_out.disconnect(on_logout)

    assert await stored_session(session_cookie) is None
    assert scope["user"].is_anonymous
    assert scope["session"].is_empty()
    assert [u.pk for u in logouts] == [user.pk]  # type: ignore[attr-defined]


async def test_login_without_a_user_is_refused() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        del scope["user"]
        with pytest.raises(ValueError, match="needs a user"):
            await login(scope, None)
        await send({"type": "websocket.accept"})

    scope = await connect_with_auth(app)

    assert "user" not in scope


async def test_login_with_several_backends_needs_one_named(user: User) -> None:
    backends = [MODEL_BACKEND, "django.contrib.auth.backends.AllowAllUsersModelBackend"]

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        with override_settings(AUTHENTICATION_BACKENDS=backends):
            with pytest.raises(ValueError, match="AUTHENTICATION_BACKENDS"):
                await login(scope, user)
            await login(scope, user, backend=backends[1])
        await send({"type": "websocket.accept"})

    scope = await connect_with_auth(app)

    assert scope["session"][BACKEND_SESSION_KEY] == backends[1]


async def test_helpers_need_a_session() -> None:
    scope = websocket_scope()

    with pytest.raises(ValueError, match="SessionMiddleware"):
        await get_user(scope)
    with pytest.raises(ValueError, match="SessionMiddleware"):
        await logout(scope)


async def test_auth_middleware_without_session_middleware_is_refused() -> None:
    app = CookieMiddleware(AuthMiddleware(capture([])))

    with pytest.raises(ValueError, match="SessionMiddleware must be above it"):
        await call(app, websocket_scope())


def test_unresolved_user_cannot_be_read() -> None:
    user = UserLazyObject()

    with pytest.raises(ValueError, match="before AuthMiddleware resolved it"):
        _ = user.is_authenticated


async def test_the_callers_scope_is_left_untouched(session_cookie: str) -> None:
    outer = websocket_scope(cookie_header(session_cookie))
    before = dict(outer)
    seen: list[Scope] = []

    await handshake(AuthMiddlewareStack(capture(seen)), outer)

    assert outer == before
    assert {"cookies", "session", "user"} <= seen[0].keys()
    assert seen[0]["user"].is_authenticated
