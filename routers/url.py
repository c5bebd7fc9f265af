"""`URLRouter`: picks an application by the scope's path, with Django's path() and re_path()."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, cast

from django.core.exceptions import ImproperlyConfigured
from django.urls import URLPattern, URLResolver
from django.urls import path as django_path
from django.urls import re_path as django_re_path
from django.urls.exceptions import Resolver404
from django.urls.resolvers import RegexPattern, RoutePattern

from gateway.exceptions import RouteNotFound
from gateway.types import AnyASGIApp, Receive, Scope, Send

__all__ = ["URLRouter", "check_application", "merge_url_route", "path", "re_path"]


def path(
    route: str, app: AnyASGIApp, kwargs: dict[str, Any] | None = None, name: str = ""
) -> URLPattern:
    """Django's ``path()`` for a URLRouter route: the same pattern, typed for an ASGI app.

    ``django.urls.path`` works at run time too; its type stubs only accept views, so a
    type-checked routing module imports this one.
    """
    return cast(URLPattern, django_path(route, cast(Any, app), kwargs, name or None))


def re_path(
    route: str, app: AnyASGIApp, kwargs: dict[str, Any] | None = None, name: str = ""
) -> URLPattern:
    """Django's ``re_path()`` for a URLRouter route, typed for an ASGI app (see `path`)."""
    return cast(URLPattern, django_re_path(route, cast(Any, app), kwargs, name or None))


def merge_url_route(
    scope: Mapping[str, Any], args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The scope's ``url_route`` with a router's captures added after an outer router's."""
    outer = scope.get("url_route", {})
    return {
        "args": (*outer.get("args", ()), *args),
        "kwargs": {**outer.get("kwargs", {}), **(kwargs or {})},
    }


def check_application(application: object, where: str) -> None:
    """Refuse a consumer class where a per-scope ASGI application belongs.

    A consumer instance is an ASGI callable, as in Channels, so it is accepted; it serves
    every scope routed to it itself, where ``as_asgi()`` makes one instance per scope.
    """
    if isinstance(application, type) and hasattr(application, "as_asgi"):
        raise ImproperlyConfigured(
            f"{where}: route to {application.__name__}.as_asgi(), not to the consumer class."
        )


class _Route(NamedTuple):
    pattern: RoutePattern | RegexPattern
    application: AnyASGIApp
    defaults: dict[str, Any]


class _Match(NamedTuple):
    application: AnyASGIApp
    path_remaining: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


class URLRouter:
    """Routes a scope by ``path`` (or ``path_remaining`` when nested) to the first match."""

    #: Routes pointing at an application with this flag are prefixes, not endpoints.
    _path_routing = True

    def __init__(self, routes: Sequence[URLPattern | URLResolver]) -> None:
        self.routes = list(routes)
        self._routes = [_compile(route) for route in self.routes]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> Any:
        path = _routing_path(scope)
        match = self.resolve(path)
        if match is None:
            raise RouteNotFound(f"No route found for path {path!r}.")
        url_route = merge_url_route(scope, match.args, match.kwargs)
        scope = {**scope, "path_remaining": match.path_remaining, "url_route": url_route}
        return await match.application(scope, receive, send)

    def resolve(self, path: str) -> _Match | None:
        """Find the application for a path; nested routers are searched without being called."""
        for route in self._routes:
            found = _match(route.pattern, path)
            if found is None:
                continue
            rest, args, kwargs = found
            kwargs = {**kwargs, **route.defaults}
            if not isinstance(route.application, URLRouter):
                return _Match(route.application, rest, args, kwargs)
            # Resolving through a nested router here lets a failed inner match
            # fall back to the next route without calling anything.
            inner = route.application.resolve(rest.lstrip("/"))
            if inner is not None:
                return _Match(
                    inner.application,
                    inner.path_remaining,
                    (*args, *inner.args),
                    {**kwargs, **inner.kwargs},
                )
        return None


def _compile(route: URLPattern | URLResolver) -> _Route:
    if isinstance(route, URLResolver):
        raise ImproperlyConfigured(
            f"{route}: include() is not supported in URLRouter. Nest URLRouter instances instead."
        )
    pattern = route.pattern
    if not isinstance(pattern, RoutePattern | RegexPattern):
        raise ImproperlyConfigured(f"{route}: unsupported pattern type {type(pattern)!r}.")
    check_application(route.callback, f"URLRouter route {pattern.describe()}")
    if getattr(route.callback, "_path_routing", False):
        # A nested router matches a prefix, so its pattern must not be an endpoint.
        pattern = type(pattern)(str(pattern), pattern.name, is_endpoint=False)
    return _Route(pattern, route.callback, dict(route.default_args))


def _match(
    pattern: RoutePattern | RegexPattern, path: str
) -> tuple[str, tuple[Any, ...], dict[str, Any]] | None:
    try:
        return pattern.match(path)
    except Resolver404:
        # Older Django versions signal a failed converter this way.
        return None


def _routing_path(scope: Scope) -> str:
    """The path left to route, without root_path and leading slashes (as Django sees it)."""
    if "path_remaining" in scope:
        return str(scope["path_remaining"]).lstrip("/")
    path = scope.get("path")
    if path is None:
        raise ValueError("No 'path' key in connection scope, cannot route URLs.")
    root_path = scope.get("root_path", "")
    if root_path:
        under_root = path == root_path or path.startswith(root_path.rstrip("/") + "/")
        if not under_root:
            raise RouteNotFound(f"No route found for path {path!r}.")
        path = path[len(root_path) :]
    return str(path).lstrip("/")
