"""Django authentication for ASGI scopes: ``scope["user"]``, ``login`` and ``logout``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.utils.functional import LazyObject, empty

from gateway.db import database_sync_to_async
from gateway.middleware.base import BaseMiddleware
from gateway.middleware.cookies import CookieMiddleware
from gateway.middleware.sessions import SessionMiddleware
from gateway.types import ASGIApp, Receive, Scope, Send

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser
    from django.contrib.auth.models import AnonymousUser
    from django.contrib.sessions.backends.base import SessionBase

    # The stubs make LazyObject generic; at run time it cannot be subscripted.
    _LazyUser = LazyObject[AbstractBaseUser | AnonymousUser]
else:
    _LazyUser = LazyObject


async def get_user(scope: Scope) -> AbstractBaseUser | AnonymousUser:
    """The user of the scope's session, or ``AnonymousUser``; checks the session hash."""
    return await database_sync_to_async(_get_user)(_session(scope, "get_user"))


async def login(scope: Scope, user: AbstractBaseUser | None, backend: str | None = None) -> None:
    """Log ``user`` in on the scope's session, as ``django.contrib.auth.login`` does.

    The session is not saved here (as in Channels); outside HTTP, save it yourself.
    """
    session = _session(scope, "login")
    user = user if user is not None else scope.get("user")
    if user is None:
        raise ValueError(
            "User must be passed as an argument or must be present in the scope: login()"
            " needs a user to log in."
        )
    await database_sync_to_async(_login)(session, user, backend)
    scope["user"] = user


async def logout(scope: Scope) -> None:
    """Flush the scope's session and make ``scope["user"]`` anonymous."""
    session = _session(scope, "logout")
    await database_sync_to_async(_logout)(session, scope.get("user"))
    if "user" in scope:
        from django.contrib.auth.models import AnonymousUser

        scope["user"] = AnonymousUser()


class UserLazyObject(_LazyUser):
    """``scope["user"]`` until it is resolved; reading it early is an error, not a query."""

    def _setup(self) -> None:
        raise ValueError("Accessing scope['user'] before AuthMiddleware resolved it.")


class AuthMiddleware(BaseMiddleware):
    """Puts the session's user in ``scope["user"]``; needs ``SessionMiddleware`` above."""

    def populate_scope(self, scope: Scope) -> None:
        """Check for a session and put an unresolved user in the scope."""
        if "session" not in scope:
            raise ValueError(
                "AuthMiddleware cannot find session in scope. SessionMiddleware must be above "
                "it (AuthMiddlewareStack puts it there)."
            )
        scope.setdefault("user", UserLazyObject())

    async def resolve_scope(self, scope: Scope) -> None:
        """Load the user before the inner application runs."""
        user = scope["user"]
        if isinstance(user, UserLazyObject) and user._wrapped is empty:
            user._wrapped = await get_user(scope)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> Any:
        scope = dict(scope)
        self.populate_scope(scope)
        await self.resolve_scope(scope)
        return await super().__call__(scope, receive, send)


def AuthMiddlewareStack(inner: ASGIApp) -> ASGIApp:  # the Channels name
    """``CookieMiddleware(SessionMiddleware(AuthMiddleware(inner)))``."""
    return CookieMiddleware(SessionMiddleware(AuthMiddleware(inner)))


def _session(scope: Scope, caller: str) -> SessionBase:
    if "session" not in scope:
        raise ValueError(
            "Cannot find session in scope. You should wrap your consumer in SessionMiddleware"
            f" (or AuthMiddlewareStack) to call {caller}()."
        )
    session: SessionBase = scope["session"]
    return session


def _session_user_id(session: SessionBase) -> Any:
    from django.contrib.auth import SESSION_KEY, get_user_model

    # The id is stored as a string; the pk field turns it back into its Python type.
    return get_user_model()._meta.pk.to_python(session[SESSION_KEY])


def _get_user(session: SessionBase) -> AbstractBaseUser | AnonymousUser:
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, SESSION_KEY, load_backend
    from django.contrib.auth.models import AnonymousUser

    if SESSION_KEY not in session or BACKEND_SESSION_KEY not in session:
        return AnonymousUser()
    backend_path = session[BACKEND_SESSION_KEY]
    if backend_path not in settings.AUTHENTICATION_BACKENDS:
        return AnonymousUser()
    user = load_backend(backend_path).get_user(_session_user_id(session))
    if user is None or not _hash_verified(session, user):
        return AnonymousUser()
    return user


def _hash_verified(session: SessionBase, user: AbstractBaseUser) -> bool:
    from django.contrib.auth import HASH_SESSION_KEY
    from django.utils.crypto import constant_time_compare

    stored = session.get(HASH_SESSION_KEY)
    current = user.get_session_auth_hash()
    if stored and constant_time_compare(stored, current):
        return True
    if stored and any(constant_time_compare(stored, h) for h in _fallback_hashes(user)):
        # Signed with a rotated-out SECRET_KEY: still valid, so re-sign under the current key.
        session.cycle_key()
        session[HASH_SESSION_KEY] = current
        return True
    # A password change (or a forged session) invalidates every session of the user.
    session.flush()
    return False


def _fallback_hashes(user: AbstractBaseUser) -> list[str]:
    fallback = getattr(user, "get_session_auth_fallback_hash", None)
    return list(fallback()) if fallback is not None else []


def _login(session: SessionBase, user: AbstractBaseUser, backend: str | None) -> None:
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.auth.signals import user_logged_in
    from django.utils.crypto import constant_time_compare

    backend = _backend_path(user, backend)
    auth_hash = user.get_session_auth_hash()
    if SESSION_KEY not in session:
        session.cycle_key()  # a fresh key on login defeats session fixation
    elif _session_user_id(session) != user.pk or not constant_time_compare(
        session.get(HASH_SESSION_KEY, ""), auth_hash
    ):
        session.flush()  # never reuse another user's session
    session[SESSION_KEY] = user._meta.pk.value_to_string(user)
    session[BACKEND_SESSION_KEY] = backend
    session[HASH_SESSION_KEY] = auth_hash
    user_logged_in.send(sender=user.__class__, request=None, user=user)


def _backend_path(user: AbstractBaseUser, backend: str | None) -> str:
    from django.conf import settings

    path = backend or getattr(user, "backend", None)
    if path is None:
        if len(settings.AUTHENTICATION_BACKENDS) != 1:
            raise ValueError(
                "You have multiple authentication backends configured and therefore must"
                " provide the `backend` argument or set the `backend` attribute on the user"
                " (AUTHENTICATION_BACKENDS lists several)."
            )
        path = settings.AUTHENTICATION_BACKENDS[0]
    if not isinstance(path, str):
        raise TypeError(f"backend must be a dotted import path string (got {path!r}).")
    return path


def _logout(session: SessionBase, user: Any) -> None:
    from django.contrib.auth.signals import user_logged_out

    # Sent before the flush, so receivers can still see who logged out; as in Channels,
    # only when someone was logged in.
    if user is not None and getattr(user, "is_authenticated", True):
        user_logged_out.send(sender=user.__class__, request=None, user=user)
    session.flush()
