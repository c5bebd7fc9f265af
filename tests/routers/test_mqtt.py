"""MqttTopicRouter: patterns, captures, nesting, $-topics, errors and derived subscriptions."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import gateway
from gateway.exceptions import RouteNotFound
from gateway.mqtt import filter_covers
from gateway.types import Receive, Scope, Send
from routers import MqttTopicRouter, ProtocolTypeRouter, topic
from routers.mqtt import TopicNotFound, minimise_filters


class Recorder:
    """An endpoint that remembers the scope it was called with."""

    def __init__(self, name: str = "app") -> None:
        self.name = name
        self.scopes: list[Scope] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scopes.append(scope)


async def route(router: MqttTopicRouter, topic_name: str, **extra: Any) -> Scope:
    """Call the router on a topic; return the scope the endpoint saw."""
    seen: list[Scope] = []

    async def receive() -> dict[str, Any]:
        return {"type": "mqtt.message", "payload": b""}

    async def send(message: Any) -> None:
        pass

    for candidate in _endpoints(router):
        candidate.scopes = seen
    await router({"type": "mqtt", "topic": topic_name, **extra}, receive, send)
    assert len(seen) == 1
    return seen[0]


def _endpoints(router: MqttTopicRouter) -> list[Recorder]:
    found: list[Recorder] = []
    for entry in router.routes:
        if isinstance(entry.application, MqttTopicRouter):
            found.extend(_endpoints(entry.application))
        elif isinstance(entry.application, Recorder):
            found.append(entry.application)
    return found


def which(router: MqttTopicRouter, topic_name: str) -> str | None:
    match = router.resolve(topic_name)
    if match is None:
        return None
    application = match.application
    assert isinstance(application, Recorder)
    return application.name


# --- matching --------------------------------------------------------------------------------


async def test_named_level_lands_in_kwargs() -> None:
    router = MqttTopicRouter([topic("devices/{device_id}/telemetry", Recorder())])
    scope = await route(router, "devices/d-1/telemetry")
    assert scope["url_route"] == {"args": (), "kwargs": {"device_id": "d-1"}}
    assert scope["topic"] == "devices/d-1/telemetry"


async def test_path_converter_takes_the_joined_tail() -> None:
    router = MqttTopicRouter([topic("files/{name:path}", Recorder())])
    scope = await route(router, "files/a/b/c")
    assert scope["url_route"]["kwargs"] == {"name": "a/b/c"}
    assert router.resolve("files") is None  # one or more levels


async def test_plain_wildcards_land_in_args_in_order() -> None:
    router = MqttTopicRouter([topic("+/x/+/#", Recorder())])
    scope = await route(router, "a/x/b/c/d")
    assert scope["url_route"] == {"args": ("a", "b", "c/d"), "kwargs": {}}


def test_hash_matches_the_parent_level_with_an_empty_arg() -> None:
    router = MqttTopicRouter([topic("a/#", Recorder())])
    match = router.resolve("a")
    assert match is not None
    assert match.args == ("",)


def test_empty_levels_are_matched_like_mqtt_plus() -> None:
    router = MqttTopicRouter([topic("devices/{device_id}/t", Recorder())])
    match = router.resolve("devices//t")
    assert match is not None
    assert match.kwargs == {"device_id": ""}


def test_literals_match_exactly_and_first_match_wins() -> None:
    router = MqttTopicRouter(
        [
            topic("devices/special/status", Recorder("special")),
            topic("devices/{id}/status", Recorder("any")),
            topic("devices/#", Recorder("rest")),
        ]
    )
    assert which(router, "devices/special/status") == "special"
    assert which(router, "devices/other/status") == "any"
    assert which(router, "devices/other/status/x") == "rest"
    assert which(router, "Devices/x/status") is None


def test_dollar_topics_are_not_matched_by_a_leading_wildcard() -> None:
    router = MqttTopicRouter([topic("#", Recorder("hash")), topic("$SYS/#", Recorder("sys"))])
    assert which(router, "$SYS/broker/load") == "sys"
    assert which(router, "normal/topic") == "hash"
    plus = MqttTopicRouter([topic("+/x", Recorder()), topic("{a}/y", Recorder())])
    assert plus.resolve("$a/x") is None
    assert plus.resolve("$a/y") is None


async def test_no_match_raises_route_not_found_naming_the_topic() -> None:
    router = MqttTopicRouter([topic("a/b", Recorder())])
    with pytest.raises(RouteNotFound, match="nothing/here"):
        await route(router, "nothing/here")
    assert TopicNotFound.retryable is False


async def test_scope_is_copied_and_outer_url_route_merged() -> None:
    router = MqttTopicRouter([topic("a/{x}", Recorder())])
    original: dict[str, Any] = {"url_route": {"args": ("outer",), "kwargs": {"y": "1"}}}
    scope = await route(router, "a/b", **original)
    assert scope["url_route"] == {"args": ("outer",), "kwargs": {"y": "1", "x": "b"}}
    assert original == {"url_route": {"args": ("outer",), "kwargs": {"y": "1"}}}


# --- nesting ---------------------------------------------------------------------------------


async def test_nested_router_matches_the_remaining_levels() -> None:
    inner = MqttTopicRouter([topic("devices/{device}/+", Recorder("leaf"))])
    router = MqttTopicRouter([topic("sites/{site}", inner)])
    scope = await route(router, "sites/s1/devices/d1/temp")
    assert scope["url_route"] == {"args": ("temp",), "kwargs": {"site": "s1", "device": "d1"}}
    assert scope["topic_remaining"] == "devices/d1/temp"
    assert scope["topic"] == "sites/s1/devices/d1/temp"


def test_failed_inner_match_falls_back_to_the_next_route() -> None:
    inner = MqttTopicRouter([topic("devices/{device}", Recorder("inner"))])
    router = MqttTopicRouter([topic("sites/{site}", inner), topic("sites/#", Recorder("rest"))])
    assert which(router, "sites/s/devices/d") == "inner"
    assert which(router, "sites/s/other") == "rest"
    assert which(router, "sites/s") == "rest"  # nothing left for the inner routes


async def test_inner_router_called_directly_routes_topic_remaining() -> None:
    inner = MqttTopicRouter([topic("{a}", Recorder())])
    scope = await route(inner, "x/$y", topic_remaining="$y")
    assert scope["url_route"]["kwargs"] == {"a": "$y"}  # not at the topic's start


# --- invalid patterns ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("a/#/b", "must be the last level"),
        ("a+/b", "wildcard in level"),
        ("a/b#", "wildcard in level"),
        ("dev-{id}/x", "mixes a {name}"),
        ("{id}/{id}", "duplicate names"),
        ("{1abc}", "not a valid identifier"),
        ("{}", "not a valid identifier"),
        ("", "non-empty"),
        ("{rest:path}/x", "must be the last level"),
        ("{x:int}", "unknown converter"),
    ],
)
def test_invalid_patterns_fail_at_construction(pattern: str, reason: str) -> None:
    with pytest.raises(ValueError, match="Invalid MQTT topic pattern") as info:
        topic(pattern, Recorder())
    assert reason in str(info.value)
    assert repr(pattern) in str(info.value)


def test_a_nested_prefix_cannot_end_with_a_multi_level_capture() -> None:
    with pytest.raises(ValueError, match="prefix"):
        topic("a/#", MqttTopicRouter([]))


def test_router_refuses_something_that_is_not_a_route() -> None:
    with pytest.raises(TypeError, match="topic"):
        MqttTopicRouter([("a/b", Recorder())])  # type: ignore[list-item]


# --- subscriptions ---------------------------------------------------------------------------


def test_subscriptions_translate_patterns_to_filters() -> None:
    router = MqttTopicRouter(
        [
            topic("devices/{id}/telemetry", Recorder()),
            topic("files/{name:path}", Recorder()),
            topic("alerts/#", Recorder()),
            topic("sites/{site}", MqttTopicRouter([topic("+/status", Recorder())])),
        ]
    )
    assert router.subscriptions() == [
        "devices/+/telemetry",
        "files/+/#",
        "alerts/#",
        "sites/+/+/status",
    ]
    assert router.mqtt_subscriptions() == router.subscriptions()


def test_subscriptions_are_deduplicated_and_minimised() -> None:
    router = MqttTopicRouter(
        [
            topic("devices/{id}/telemetry", Recorder()),
            topic("devices/+/status", Recorder()),
            topic("devices/#", Recorder()),
            topic("devices/#", Recorder()),
            topic("$SYS/#", Recorder()),
            topic("#", Recorder()),
        ]
    )
    assert router.subscriptions() == ["$SYS/#", "#"]


def test_filter_covers() -> None:
    assert filter_covers("devices/#", "devices/+/telemetry")
    assert filter_covers("a/#", "a")
    assert filter_covers("+/b", "a/b")
    assert not filter_covers("a/+", "a/#")
    assert not filter_covers("#", "$SYS/x")
    assert not filter_covers("a/+", "a/b/c")
    assert minimise_filters(["a/+", "a/b", "a/+"]) == ["a/+"]


def test_protocol_router_exposes_its_mapping_to_subscriptions_for() -> None:
    from protocol_adapters.mqtt.common import subscriptions_for

    root = ProtocolTypeRouter({"mqtt": MqttTopicRouter([topic("d/{id}", Recorder())])})
    assert subscriptions_for(root) == ["d/+"]


def test_public_api() -> None:
    assert gateway.MqttTopicRouter is MqttTopicRouter
    assert gateway.topic is topic


# --- property: the router agrees with MQTT's filter semantics --------------------------------

LEVELS = st.sampled_from(["a", "b", "", "$s", "c"])
PATTERN_LEVEL = st.sampled_from(["a", "b", "", "+", "{p}", "$s"])


def reference_matches(topic_filter: str, topic_name: str) -> bool:
    """An independent MQTT matcher: the filter translated to a regular expression."""
    if topic_name.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    parts = []
    for level in topic_filter.split("/"):
        parts.append("[^/]*" if level == "+" else "#" if level == "#" else re.escape(level))
    regex = "/".join(parts)
    if regex == "#":
        regex = ".*"
    elif regex.endswith("/#"):
        regex = regex[:-2] + "(/.*)?"  # "a/#" matches "a" and everything below it
    return re.fullmatch(regex, topic_name) is not None


@st.composite
def patterns(
    draw: st.DrawFn, names: str = "p", tails: tuple[str, ...] = ("", "#", "{rest:path}")
) -> str:
    levels = draw(st.lists(PATTERN_LEVEL, min_size=1, max_size=4))
    named = [f"{{{names}{i}}}" if level == "{p}" else level for i, level in enumerate(levels)]
    tail = draw(st.sampled_from(tails))
    pattern = "/".join([*named, tail]) if tail else "/".join(named)
    return pattern or "a"  # the empty pattern is refused


def as_filter(pattern: str) -> str:
    levels = pattern.split("/")
    out = ["+" if level.startswith("{") and ":" not in level else level for level in levels]
    if out[-1] == "{rest:path}":
        out[-1:] = ["+", "#"]
    return "/".join(out)


@settings(max_examples=300, deadline=None)
@given(pattern=patterns(), topic_levels=st.lists(LEVELS, min_size=1, max_size=6))
def test_router_matches_exactly_what_its_filter_matches(
    pattern: str, topic_levels: list[str]
) -> None:
    topic_name = "/".join(topic_levels)
    router = MqttTopicRouter([topic(pattern, Recorder())])
    expected = reference_matches(as_filter(pattern), topic_name)
    assert (router.resolve(topic_name) is not None) == expected
    (subscription,) = router.subscriptions()
    assert reference_matches(subscription, topic_name) == expected


@settings(max_examples=200, deadline=None)
@given(
    chosen=st.lists(patterns(), min_size=1, max_size=5),
    topic_levels=st.lists(LEVELS, min_size=1, max_size=6),
)
def test_minimised_subscriptions_cover_exactly_the_routes(
    chosen: list[str], topic_levels: list[str]
) -> None:
    topic_name = "/".join(topic_levels)
    router = MqttTopicRouter([topic(p, Recorder()) for p in chosen])
    routed = router.resolve(topic_name) is not None
    subscribed = any(reference_matches(f, topic_name) for f in router.subscriptions())
    assert routed == subscribed


@settings(max_examples=200, deadline=None)
@example(prefix="a", inner="#", topic_levels=["a"])
@example(prefix="{outer0}", inner="#", topic_levels=["$s"])
@given(
    prefix=patterns(names="outer", tails=("",)),
    inner=patterns(names="inner"),
    topic_levels=st.lists(LEVELS, min_size=1, max_size=7),
)
def test_nested_router_matches_like_the_flattened_pattern(
    prefix: str, inner: str, topic_levels: list[str]
) -> None:
    topic_name = "/".join(topic_levels)
    nested = MqttTopicRouter([topic(prefix, MqttTopicRouter([topic(inner, Recorder())]))])
    flat = MqttTopicRouter([topic(f"{prefix}/{inner}", Recorder())])
    nested_match, flat_match = nested.resolve(topic_name), flat.resolve(topic_name)
    assert (nested_match is None) == (flat_match is None)
    if nested_match is not None and flat_match is not None:
        assert (nested_match.args, nested_match.kwargs) == (flat_match.args, flat_match.kwargs)
    assert nested.subscriptions() == flat.subscriptions()


def test_a_consumer_class_instead_of_as_asgi_is_refused() -> None:
    from django.core.exceptions import ImproperlyConfigured

    from gateway.consumers import AsyncMqttConsumer

    with pytest.raises(ImproperlyConfigured, match=r"as_asgi\(\)"):
        topic("a/b", AsyncMqttConsumer)  # type: ignore[arg-type]
