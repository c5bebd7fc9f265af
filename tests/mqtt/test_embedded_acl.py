"""The embedded broker's topic ACL, and the amqtt ACL flaw it replaces."""

from __future__ import annotations

import pytest
from amqtt.plugins.topic_checking import TopicAccessControlListPlugin

from protocol_adapters.mqtt.embedded_acl import acl_for, filter_within, may_publish, may_subscribe
from protocol_adapters.mqtt.embedded_connections import PacketCounter

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
    assert filter_within(requested, allowed) is expected


def test_amqtts_acl_lets_a_plus_grant_a_hash() -> None:
    # The flaw documented in embedded_acl: amqtt grants these wider subscriptions.
    assert TopicAccessControlListPlugin.topic_ac("devices/#", "devices/+") is True
    assert TopicAccessControlListPlugin.topic_ac("#", "+") is True


def test_acl_for_puts_the_device_id_in_the_patterns() -> None:
    assert acl_for(["devices/{device_id}/#", "fleet/{device_id}"], "dev-1") == (
        "devices/dev-1/#",
        "fleet/dev-1",
    )
    for unsafe in ("", "a/b", "a+", "#"):
        assert acl_for(["devices/{device_id}/#"], unsafe) is None


def test_publish_and_subscribe_checks() -> None:
    assert may_publish(OWN, "devices/dev-1/telemetry")
    assert not may_publish(OWN, "devices/dev-2/telemetry")
    assert may_subscribe(OWN, "devices/dev-1/commands")
    assert not may_subscribe(OWN, "devices/+/commands")


def test_the_packet_counter_counts_qos0_and_qos1_publishes_only() -> None:
    counter = PacketCounter(max_packet=100)
    qos0, qos1, qos2, dup0 = b"\x30\x03\x00\x01a", b"\x32\x05\x00\x01a\x00\x01", b"\x34", b"\x38"
    ping = b"\xc0\x00"
    assert counter.feed(qos0 + ping + qos1) == 2
    assert counter.feed(qos2 + b"\x05\x00\x01a\x00\x02") == 0  # after PUBREL only
    assert counter.feed(dup0 + b"\x03\x00\x01a") == 0  # amqtt drops these
    # Byte by byte, as amqtt reads headers.
    assert sum(counter.feed(bytes([byte])) for byte in qos0 * 3) == 3
    assert counter.oversized == 0
    counter.feed(b"\x30\xff\x01")  # remaining length 255
    assert counter.oversized == 255
