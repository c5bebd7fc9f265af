"""ASGI middleware: cookies, Django sessions and users in the scope, WebSocket origin checks.

Names and behaviour follow Django Channels, so a Channels project moves over by changing
its imports. Nothing here touches Django settings until a connection arrives.
"""

from __future__ import annotations

from gateway.middleware.auth import (
    AuthMiddleware,
    AuthMiddlewareStack,
    get_user,
    login,
    logout,
)
from gateway.middleware.base import BaseMiddleware
from gateway.middleware.cookies import CookieMiddleware
from gateway.middleware.origin import AllowedHostsOriginValidator, OriginValidator
from gateway.middleware.sessions import SessionMiddleware, SessionMiddlewareStack

__all__ = [
    "AllowedHostsOriginValidator",
    "AuthMiddleware",
    "AuthMiddlewareStack",
    "BaseMiddleware",
    "CookieMiddleware",
    "OriginValidator",
    "SessionMiddleware",
    "SessionMiddlewareStack",
    "get_user",
    "login",
    "logout",
]
