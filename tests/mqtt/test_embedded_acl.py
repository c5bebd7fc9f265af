"""The embedded broker's topic ACL."""

from __future__ import annotations

import pytest

from gateway.mqtt import filter_covers
from protocol_adapters.mqtt.embedded_acl import acl_for, may_publish, may_subscribe

OWN = ("devices/dev-1/#",)


@pytest.mark.parametrize(
    ("requested", "allowed", "expected"),
    [
        ("devices/dev-1/#", "devices/dev-1/#", True),
        ("devices/dev-1/commands", "devices/dev-1/#", True),
        ("devices/dev-1", "devices/dev-1/#", True),
        ("devices/dev-1/+/x", "devices/dev-1/#", True),
        ("devices/#", "devices/dev-1/#", False),
        ("devices/+/commands", "devices/dev-1/#", False),
        ("#", "devices/dev-1/#", False),
        ("devices/#", "devices/+", False),
        ("devices/+", "devices/+", True),
        ("#", "+/+", False),
        ("a/b/c", "a/b", False),
    ],
)
def test_a_filter_is_allowed_only_when_every_topic_it_matches_is(
    requested: str, allowed: str, expected: bool
) -> None:
    assert filter_covers(allowed, requested) is expected


def test_acl_for_puts_the_device_id_in_the_patterns() -> None:
    assert acl_for(["devices/{device_id}/#", "fleet/{device_id}"], "dev-1") == (
        "devices/dev-1/#",
        "fleet/dev-1",
    )
    for unsafe in ("", "a/b", "a+", "#"):
        assert acl_for(["devices/{device_id}/#"], unsafe) is None
    # Without {device_id}, the identity names no topic: an assigned id with "/" is fine.
    assert acl_for(["#"], "") == ("#",)


def test_a_first_level_wildcard_grants_no_dollar_topics() -> None:
    # The ACL and the routers share one containment rule; the ACL's own copy granted these.
    assert not may_subscribe(("+/x",), "$SYS/x")
    assert not may_subscribe(("#",), "$SYS/#")
    assert may_subscribe(("$SYS/#",), "$SYS/x")


def test_publish_and_subscribe_checks() -> None:
    assert may_publish(OWN, "devices/dev-1/telemetry")
    assert not may_publish(OWN, "devices/dev-2/telemetry")
    assert may_subscribe(OWN, "devices/dev-1/commands")
    assert not may_subscribe(OWN, "devices/+/commands")
