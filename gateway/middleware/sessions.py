"""Django sessions for ASGI scopes, loaded from the session cookie."""

from __future__ import annotations

from functools import partial
from importlib import import_module
from typing import TYPE_CHECKING, Any, cast

from django.contrib.sessions.exceptions import SessionInterrupted
from django.core.exceptions import SuspiciousOperation
from django.utils.functional import SimpleLazyObject, empty

from gateway.db import database_sync_to_async
from gateway.middleware.cookies import CookieMiddleware
from gateway.types import AnyASGIApp, ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from django.contrib.sessions.backends.base import SessionBase


class SessionDeleted(SessionInterrupted, SuspiciousOperation):
    """The session was deleted while the request ran (the user logged out elsewhere).

    Django raises `SessionInterrupted` here and Channels `SuspiciousOperation`; this is both,
    so code that catches either keeps working.
    """


class SessionMiddleware:
    """Puts a lazy Django session in ``scope["session"]``; needs ``CookieMiddleware`` above.

    For HTTP, a modified session is saved and its cookie set on ``http.response.start``, as
    Django's own SessionMiddleware does. Other scope types save the session themselves.
    """

    def __init__(self, inner: AnyASGIApp) -> None:
        self.inner = inner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> Any:
        if "session" in scope:
            # A session middleware further out owns this session and its saving.
            return await self.inner(dict(scope), receive, send)
        if "cookies" not in scope:
            raise ValueError(
                "No cookies in scope: SessionMiddleware must run inside CookieMiddleware "
                "(use SessionMiddlewareStack)."
            )
        scope = dict(scope, session=_lazy_session(scope["cookies"]))
        return await self.inner(scope, receive, partial(_send_with_session, scope, send))


def SessionMiddlewareStack(inner: ASGIApp) -> ASGIApp:  # the Channels name
    """``CookieMiddleware(SessionMiddleware(inner))``."""
    return CookieMiddleware(SessionMiddleware(inner))


def _lazy_session(cookies: dict[str, str]) -> SimpleLazyObject[SessionBase]:
    # Built on first use, so scopes that never touch the session cost nothing.
    from django.conf import settings

    store = import_module(settings.SESSION_ENGINE).SessionStore
    return SimpleLazyObject(partial(store, cookies.get(settings.SESSION_COOKIE_NAME)))


async def _send_with_session(scope: Scope, send: Send, message: Message) -> None:
    from django.conf import settings

    session = scope["session"]
    touched = session._wrapped is not empty
    if message["type"] == "http.response.start" and (
        touched or settings.SESSION_SAVE_EVERY_REQUEST
    ):
        had_cookie = settings.SESSION_COOKIE_NAME in scope["cookies"]
        save = database_sync_to_async(_save_session)
        await save(cast("SessionBase", session), had_cookie, message)
    await send(message)


def _save_session(session: SessionBase, had_cookie: bool, message: Message) -> None:
    """Django's ``SessionMiddleware.process_response``, applied to a response start."""
    from django.conf import settings

    if had_cookie and session.is_empty():
        CookieMiddleware.delete_cookie(
            message,
            settings.SESSION_COOKIE_NAME,
            path=settings.SESSION_COOKIE_PATH,
            domain=settings.SESSION_COOKIE_DOMAIN,
            samesite=settings.SESSION_COOKIE_SAMESITE,
        )
        return
    wanted = session.modified or settings.SESSION_SAVE_EVERY_REQUEST
    # Like Django, a 5xx response leaves the stored session as it was.
    if not wanted or session.is_empty() or message.get("status", 200) >= 500:
        return
    _save(session)
    at_close = session.get_expire_at_browser_close()
    CookieMiddleware.set_cookie(
        message,
        settings.SESSION_COOKIE_NAME,
        session.session_key or "",
        max_age=None if at_close else session.get_expiry_age(),
        domain=settings.SESSION_COOKIE_DOMAIN,
        path=settings.SESSION_COOKIE_PATH,
        secure=settings.SESSION_COOKIE_SECURE,
        httponly=settings.SESSION_COOKIE_HTTPONLY,
        samesite=settings.SESSION_COOKIE_SAMESITE,
    )


def _save(session: SessionBase) -> None:
    from django.contrib.sessions.backends.base import UpdateError

    try:
        session.save()
    except UpdateError as exc:
        raise SessionDeleted(
            "The request's session was deleted before the request completed. The user may"
            " have logged out in a concurrent request, for example."
        ) from exc
