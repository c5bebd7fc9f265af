"""``gateway routes APP``: every route of every protocol; ``--email ADDRESS`` says which matches.

Routers are found through `ProtocolTypeRouter`, `ChannelNameRouter` and any middleware's
``inner`` application. A router this module does not know is described from its ``routes``
(and ``default``) when it has them, else listed as one opaque application.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from typing import Any, NamedTuple

from gateway.cli import EXIT_FAILED, EXIT_OK, add_common_options, load_app

__all__ = ["RouteRow", "collect_routes", "describe_app", "match_email", "register"]

_MAX_DEPTH = 32


class RouteRow(NamedTuple):
    """One route: its protocol, its pattern (nested patterns joined) and its target."""

    protocol: str
    pattern: str
    target: str


def describe_app(app: object) -> str:
    """A short name for an application: the consumer class, or the object's class."""
    consumer = getattr(app, "consumer_class", None)
    if consumer is not None:
        return f"{consumer.__module__}.{consumer.__qualname__}"
    name = getattr(app, "__qualname__", None) or type(app).__qualname__
    module = getattr(app, "__module__", None) or type(app).__module__
    return f"{module}.{name}"


def _unwrap(app: object) -> object:
    # Middleware keeps the wrapped application as `inner`; routers do not.
    for _ in range(_MAX_DEPTH):
        if _routes_of(app) is not None or not hasattr(app, "inner"):
            return app
        app = app.inner
    return app


def _routes_of(app: object) -> list[tuple[str, object]] | None:
    """(pattern, application) pairs of a router, None for an endpoint."""
    from routers import ChannelNameRouter, ProtocolTypeRouter, URLRouter
    from routers.email import EmailToRouter

    if isinstance(app, EmailToRouter):
        return app.describe_routes()
    if isinstance(app, URLRouter):
        return [(str(route.pattern), route.callback) for route in app.routes]
    if isinstance(app, ChannelNameRouter | ProtocolTypeRouter):
        return list(app.application_mapping.items())
    routes = getattr(app, "routes", None)
    if not isinstance(routes, list):
        return None
    rows = [(_route_label(route), _route_target(route)) for route in routes]
    default = getattr(app, "default", None)
    if default is not None:
        rows.append(("(default)", default))
    return rows


def _route_label(route: Any) -> str:
    for attribute in ("pattern", "prefix", "code"):
        value = getattr(route, attribute, None)
        if value is not None:
            return str(value)
    return str(route)


def _route_target(route: Any) -> object:
    return getattr(route, "application", None) or getattr(route, "callback", route)


def _walk(protocol: str, app: object, prefix: str, depth: int = 0) -> Iterator[RouteRow]:
    app = _unwrap(app)
    routes = _routes_of(app) if depth < _MAX_DEPTH else None
    if routes is None:
        yield RouteRow(protocol, prefix or "*", describe_app(app))
        return
    for pattern, target in routes:
        yield from _walk(protocol, target, prefix + pattern, depth + 1)


def collect_routes(app: object) -> list[RouteRow]:
    """Every route of every protocol in a root application, in routing order."""
    from routers import ProtocolTypeRouter

    root = _unwrap(app)
    if isinstance(root, ProtocolTypeRouter):
        rows: list[RouteRow] = []
        for protocol, inner in root.application_mapping.items():
            rows.extend(_walk(protocol, inner, ""))
        return rows
    return [RouteRow("*", "*", describe_app(root))]


def match_email(app: object, recipient: str) -> tuple[str, str, dict[str, Any]] | None:
    """(pattern, target, kwargs) of the route taking mail for `recipient`, or None."""
    from routers.email import find_email_router

    router = find_email_router(app)
    found = router.resolve(recipient) if router is not None else None
    if found is None:
        return None
    route, application, kwargs = found
    return (route.pattern if route else "(default)"), describe_app(application), kwargs


def register(commands: Any) -> None:
    """Add the ``routes`` subcommand to the ``gateway`` command."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "routes", help="list every route of every protocol, or find the route of an address"
    )
    parser.add_argument("app", metavar="APP", help="the root ASGI app, as module.path:attribute")
    parser.add_argument("--email", metavar="ADDRESS", help="tell which route takes this address")
    add_common_options(parser)
    parser.set_defaults(handler=_routes_command, needs_django=True)


def _routes_command(args: argparse.Namespace) -> int:
    app = load_app(args.app)
    if args.email is not None:
        return _explain_email(app, args.email)
    rows = collect_routes(app)
    width = max((len(row.protocol) for row in rows), default=0)
    pattern_width = max((len(row.pattern) for row in rows), default=0)
    for row in rows:
        line = f"{row.protocol:<{width}}  {row.pattern:<{pattern_width}}  -> {row.target}\n"
        sys.stdout.write(line)
    return EXIT_OK


def _explain_email(app: object, recipient: str) -> int:
    match = match_email(app, recipient)
    if match is None:
        sys.stdout.write(f"{recipient}: no route; refused at RCPT (550 5.1.1)\n")
        return EXIT_FAILED
    pattern, target, kwargs = match
    sys.stdout.write(f"{recipient}: {pattern} -> {target} kwargs={kwargs}\n")
    return EXIT_OK
