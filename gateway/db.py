"""Django database access from async code, with connections cleaned up like a request's."""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, ParamSpec, TypeVar

from asgiref.sync import SyncToAsync, sync_to_async
from django.db import close_old_connections

from gateway.turns import thread_call

__all__ = [
    "DatabaseSyncToAsync",
    "aclose_old_connections",
    "close_old_connections_enabled",
    "database_sync_to_async",
]

_P = ParamSpec("_P")
_R = TypeVar("_R")

#: Test communicators turn this off for the application they run: like Django's test
#: client, they keep the test's connections (and its transaction) open between calls.
close_old_connections_enabled: ContextVar[bool] = ContextVar(
    "gateway_close_old_connections", default=True
)


def _with_fresh_connections(func: Callable[_P, _R]) -> Callable[_P, _R]:
    @functools.wraps(func)
    def run(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        if not close_old_connections_enabled.get():
            return func(*args, **kwargs)
        close_old_connections()
        try:
            return func(*args, **kwargs)
        finally:
            close_old_connections()

    return run


class DatabaseSyncToAsync(SyncToAsync[_P, _R]):
    """`sync_to_async` that closes stale database connections before and after the call."""

    def __init__(self, func: Callable[_P, _R], *args: Any, **kwargs: Any) -> None:
        super().__init__(func, *args, **kwargs)
        # Wrapped after the checks of __init__; runs in the worker thread, inside the
        # caller's context, so the connections closed are that thread's own.
        self.func = _with_fresh_connections(func)

    async def __call__(self, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        # Counted while pending: heavy steps on the loop leave this thread the GIL meanwhile.
        with thread_call():
            return await super().__call__(*args, **kwargs)


#: Used as a decorator or wrapper, like ``sync_to_async``.
database_sync_to_async = DatabaseSyncToAsync


async def aclose_old_connections() -> None:
    """Close the worker thread's stale database connections from async code."""
    if close_old_connections_enabled.get():
        await sync_to_async(close_old_connections)()
