"""`MqttTopicRouter` and `topic()`: pick an application by an MQTT message's topic.

A pattern is a topic filter whose levels are one of:

* a literal (``devices``): matches that exact level;
* ``{name}``: matches exactly one level, captured as ``kwargs[name]``. Like MQTT's ``+`` it
  matches an empty level too (``devices//telemetry`` gives ``name == ""``), so every message
  the derived subscriptions bring in is one a route matches;
* ``{name:path}``: one or more trailing levels, captured joined with ``/``; last level only;
* ``+``: one level, appended to ``args``;
* ``#``: the remaining levels, zero or more, appended to ``args`` joined with ``/`` (``""``
  for zero levels, as MQTT's ``a/#`` also matches ``a``); last level only.

Topics starting with ``$`` are never matched by a wildcard in the first level (MQTT's rule).
A route to another `MqttTopicRouter` is a prefix: the inner router matches the levels left
(none at all only for an inner pattern starting with ``#``, as ``a/#`` matches ``a``), so a
nested router matches exactly what the flattened pattern would.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from gateway.exceptions import RouteNotFound
from gateway.mqtt import filter_covers
from gateway.types import AnyASGIApp, Receive, Scope, Send
from routers.url import check_application, merge_url_route

__all__ = ["MqttTopicRouter", "TopicNotFound", "topic"]

LevelKind = Literal["literal", "param", "path", "plus", "hash"]
_PARAM = re.compile(r"\{(?P<name>[^{}:]*)(?::(?P<converter>[^{}]*))?\}")
_WILDCARDS: frozenset[LevelKind] = frozenset({"param", "path", "plus", "hash"})


class TopicNotFound(RouteNotFound):
    """No route matched the topic; retrying cannot help, so the message is dead-lettered.

    Not retryable, as every `RouteNotFound`.
    """


class _Level(NamedTuple):
    kind: LevelKind
    value: str  # the literal text, or the capture's name


@dataclass(frozen=True)
class TopicRoute:
    """One ``topic(pattern, app)`` entry, compiled."""

    pattern: str
    application: AnyASGIApp
    levels: tuple[_Level, ...]

    @property
    def is_prefix(self) -> bool:
        return isinstance(self.application, MqttTopicRouter)

    def filter(self) -> str:
        """The MQTT subscription filter covering exactly this pattern's topics."""
        return "/".join(_FILTER_LEVEL[level.kind] or level.value for level in self.levels)


_FILTER_LEVEL: dict[LevelKind, str] = {
    "literal": "",
    "param": "+",
    "path": "+/#",  # one or more levels: "a/#" alone would also match "a"
    "plus": "+",
    "hash": "#",
}


def topic(pattern: str, application: AnyASGIApp) -> TopicRoute:
    """A route: `application` handles topics matching `pattern` (see the module docstring)."""
    check_application(application, f"MqttTopicRouter route {pattern!r}")
    route = TopicRoute(pattern, application, _compile(pattern))
    if route.is_prefix and route.levels[-1].kind in ("path", "hash"):
        raise ValueError(
            f"Invalid MQTT topic pattern {pattern!r}: a prefix of a nested MqttTopicRouter "
            "cannot end with '#' or {name:path} (nothing would be left to route)"
        )
    return route


def _compile(pattern: str) -> tuple[_Level, ...]:
    if not isinstance(pattern, str) or not pattern:
        raise ValueError(f"Invalid MQTT topic pattern {pattern!r}: it must be a non-empty str")
    if "\x00" in pattern:
        raise ValueError(f"Invalid MQTT topic pattern {pattern!r}: it contains NUL")
    parts = pattern.split("/")
    levels = tuple(_compile_level(pattern, part) for part in parts)
    names = [level.value for level in levels if level.kind in ("param", "path")]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"Invalid MQTT topic pattern {pattern!r}: duplicate names {duplicates}")
    for level in levels[:-1]:
        if level.kind in ("hash", "path"):
            what = "'#'" if level.kind == "hash" else f"{{{level.value}:path}}"
            raise ValueError(
                f"Invalid MQTT topic pattern {pattern!r}: {what} must be the last level"
            )
    return levels


def _compile_level(pattern: str, part: str) -> _Level:
    if part in ("+", "#"):
        return _Level("plus" if part == "+" else "hash", part)
    if "+" in part or "#" in part:
        raise ValueError(
            f"Invalid MQTT topic pattern {pattern!r}: wildcard in level {part!r} "
            "('+' and '#' must be a whole level)"
        )
    if "{" not in part and "}" not in part:
        return _Level("literal", part)
    found = _PARAM.fullmatch(part)
    if found is None:
        raise ValueError(
            f"Invalid MQTT topic pattern {pattern!r}: level {part!r} mixes a {{name}} with "
            "other text (a capture must be a whole level)"
        )
    name, converter = found["name"], found["converter"]
    if not name.isidentifier():
        raise ValueError(
            f"Invalid MQTT topic pattern {pattern!r}: {name!r} is not a valid identifier"
        )
    if converter is None:
        return _Level("param", name)
    if converter != "path":
        raise ValueError(
            f"Invalid MQTT topic pattern {pattern!r}: unknown converter {converter!r} "
            "(only 'path' is known)"
        )
    return _Level("path", name)


class _Match(NamedTuple):
    application: AnyASGIApp
    args: tuple[str, ...]
    kwargs: dict[str, str]
    remaining: str | None


def _match_levels(
    levels: tuple[_Level, ...], parts: list[str], at_start: bool, prefix: bool
) -> tuple[tuple[str, ...], dict[str, str], list[str]] | None:
    """Match a route's levels against topic levels; return captures and what is left."""
    if at_start and parts and parts[0].startswith("$") and levels[0].kind in _WILDCARDS:
        return None
    args: list[str] = []
    kwargs: dict[str, str] = {}
    for index, level in enumerate(levels):
        if level.kind == "hash":
            args.append("/".join(parts[index:]))
            return tuple(args), kwargs, []
        if index >= len(parts):
            return None
        if level.kind == "path":
            kwargs[level.value] = "/".join(parts[index:])
            return tuple(args), kwargs, []
        if level.kind == "literal":
            if parts[index] != level.value:
                return None
        elif level.kind == "plus":
            args.append(parts[index])
        else:
            kwargs[level.value] = parts[index]
    rest = parts[len(levels) :]
    if rest and not prefix:  # an endpoint must use every level; a prefix passes the rest on
        return None
    return tuple(args), kwargs, rest


class MqttTopicRouter:
    """Routes an ``mqtt`` scope by ``topic`` (``topic_remaining`` when nested); first match wins."""

    def __init__(self, routes: Sequence[TopicRoute]) -> None:
        for route in routes:
            if not isinstance(route, TopicRoute):
                raise TypeError(f"MqttTopicRouter takes topic(...) routes, got {route!r}")
        self.routes = list(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> Any:
        if "topic_remaining" in scope:  # called by hand below another router
            remaining = str(scope["topic_remaining"])
            match = self._resolve(remaining.split("/") if remaining else [], False)
        else:
            match = self.resolve(str(scope["topic"]))
        if match is None:
            raise TopicNotFound(f"No MQTT route found for topic {scope.get('topic')!r}.")
        scope = {**scope, "url_route": merge_url_route(scope, match.args, match.kwargs)}
        if match.remaining is not None:
            scope["topic_remaining"] = match.remaining
        return await match.application(scope, receive, send)

    def resolve(self, topic_name: str, *, at_start: bool = True) -> _Match | None:
        """Find the application for a topic; nested routers are searched, not called."""
        return self._resolve(topic_name.split("/"), at_start)

    def _resolve(self, parts: list[str], at_start: bool) -> _Match | None:
        # `parts` may be empty inside a nested router: only a leading "#" matches nothing,
        # as "a/#" matches "a".
        for route in self.routes:
            prefix = route.is_prefix
            found = _match_levels(route.levels, parts, at_start, prefix)
            if found is None:
                continue
            args, kwargs, rest = found
            if not prefix:
                return _Match(route.application, args, kwargs, None)
            inner_router = route.application
            assert isinstance(inner_router, MqttTopicRouter)
            remaining = "/".join(rest)
            inner = inner_router._resolve(rest, False)
            if inner is not None:
                return _Match(
                    inner.application,
                    (*args, *inner.args),
                    {**kwargs, **inner.kwargs},
                    remaining if inner.remaining is None else inner.remaining,
                )
        return None

    def subscriptions(self) -> list[str]:
        """The fewest MQTT filters that cover every route (nested routers included)."""
        return minimise_filters(self._filters())

    mqtt_subscriptions = subscriptions

    def _filters(self) -> list[str]:
        filters: list[str] = []
        for route in self.routes:
            own = route.filter()
            if isinstance(route.application, MqttTopicRouter):
                filters.extend(f"{own}/{inner}" for inner in route.application._filters())
            else:
                filters.append(own)
        return filters


def minimise_filters(filters: Sequence[str]) -> list[str]:
    """Deduplicate, and drop each filter another one covers; first-seen order is kept."""
    unique = list(dict.fromkeys(filters))
    return [
        narrow
        for narrow in unique
        if not any(wide != narrow and filter_covers(wide, narrow) for wide in unique)
    ]
