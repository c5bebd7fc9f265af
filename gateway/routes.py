"""``gateway routes APP``: every route of every protocol; ``--email ADDRESS`` says which matches.

`find_branch` is the one walk from a root application to the application of one protocol,
used by the adapters (the SMTP adapter checks recipients against the email branch's router)
and by this command. Routers are recognised by their shape, not their class, so adapters can
use this module without importing ``routers``: a `ProtocolTypeRouter` or `ChannelNameRouter`
by its ``application_mapping``, any other router by its ``routes`` (and ``default``); a
middleware keeps the application it wraps as ``inner`` (Channels), ``app`` (Starlette,
uvicorn) or ``application`` (origin validators). An application that is none of these is
listed as one opaque application.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

__all__ = ["RouteRow", "collect_routes", "describe_app", "find_branch", "match_email", "register"]

_MAX_DEPTH = 32
_WRAPPED = ("inner", "app", "application")  # where middleware keeps the application it wraps


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


def find_branch(app: object, protocol: str) -> object | None:
    """The application serving `protocol` scopes in a root app, with its middleware peeled off.

    Walks through middleware to the `ProtocolTypeRouter`, takes its `protocol` entry and
    peels the middleware around that too: for ``"email"`` that is the `EmailToRouter`. None
    when the `ProtocolTypeRouter` has no such entry; a root without one serves every
    protocol, so it is the branch itself.
    """
    root = _unwrap(app)
    mapping = _mapping_of(root)
    if mapping is None:
        return root
    branch = mapping.get(protocol)
    return None if branch is None else _unwrap(branch)


def _unwrap(app: object) -> object:
    """`app` without the middleware around it: stops at a router or an endpoint."""
    for _ in range(_MAX_DEPTH):
        if _routes_of(app) is not None:
            return app
        inner = _wrapped(app)
        if inner is None:
            return app
        app = inner
    return app


def _wrapped(app: object) -> object | None:
    for attribute in _WRAPPED:
        inner: object = getattr(app, attribute, None)
        if callable(inner):
            return inner
    return None


def _mapping_of(app: object) -> Mapping[str, object] | None:
    mapping = getattr(app, "application_mapping", None)
    return mapping if isinstance(mapping, Mapping) else None


def _routes_of(app: object) -> list[tuple[str, object]] | None:
    """(pattern, application) pairs of a router, None for an endpoint or a middleware."""
    mapping = _mapping_of(app)
    if mapping is not None:
        return list(mapping.items())
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
    root = _unwrap(app)
    mapping = _mapping_of(root)
    if mapping is None:
        return [RouteRow("*", "*", describe_app(root))]
    rows: list[RouteRow] = []
    for protocol, inner in mapping.items():
        rows.extend(_walk(protocol, inner, ""))
    return rows


def match_email(app: object, recipient: str) -> tuple[str, str, dict[str, Any]] | None:
    """(pattern, target, kwargs) of the route taking mail for `recipient`, or None."""
    resolve = getattr(find_branch(app, "email"), "resolve", None)
    found = resolve(recipient) if callable(resolve) else None
    if found is None:
        return None
    route, application, kwargs = found
    return (route.pattern if route else "(default)"), describe_app(application), kwargs


def register(commands: Any) -> None:
    """Add the ``routes`` subcommand to the ``gateway`` command."""
    # Imported here: gateway.cli imports the server, which adapters using find_branch skip.
    from gateway.cli import add_common_options

    parser: argparse.ArgumentParser = commands.add_parser(
        "routes", help="list every route of every protocol, or find the route of an address"
    )
    parser.add_argument("app", metavar="APP", help="the root ASGI app, as module.path:attribute")
    parser.add_argument("--email", metavar="ADDRESS", help="tell which route takes this address")
    add_common_options(parser)
    parser.set_defaults(handler=_routes_command, needs_django=True)


def _routes_command(args: argparse.Namespace) -> int:
    from gateway.cli import EXIT_OK, load_app

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
    from gateway.cli import EXIT_FAILED, EXIT_OK

    match = match_email(app, recipient)
    if match is None:
        sys.stdout.write(f"{recipient}: no route; refused at RCPT (550 5.1.1)\n")
        return EXIT_FAILED
    pattern, target, kwargs = match
    sys.stdout.write(f"{recipient}: {pattern} -> {target} kwargs={kwargs}\n")
    return EXIT_OK
