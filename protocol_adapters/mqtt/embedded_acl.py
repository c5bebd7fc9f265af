"""Per-device topic ACL: which topics a client may publish to and which filters it may use.

Patterns name the device with ``{device_id}`` (its login), so one list serves every device,
like Mosquitto's ``pattern`` lines with ``%u``. A filter with a ``+`` does not grant the ``#``
at that level (allowed ``devices/+`` does not grant ``devices/#``): a filter is allowed
only if every topic it can match is allowed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from gateway.mqtt import MqttPublishError, filter_covers, topic_matches, validate_topic_filter

__all__ = ["DEFAULT_ACL", "acl_for", "may_publish", "may_subscribe"]

DEFAULT_ACL: tuple[str, ...] = ("devices/{device_id}/#",)
_UNSAFE = frozenset("+#/\x00")


def acl_for(patterns: Iterable[str], identity: str) -> tuple[str, ...] | None:
    """The filters of `patterns` for one client; None if `identity` cannot be put in a topic."""
    patterns = tuple(patterns)
    personal = any("{device_id}" in pattern for pattern in patterns)
    if personal and (not identity or _UNSAFE & set(identity)):
        return None
    return tuple(pattern.replace("{device_id}", identity) for pattern in patterns)


def may_publish(allowed: Sequence[str], topic: str) -> bool:
    """Whether a PUBLISH to `topic` is allowed by any of the `allowed` filters."""
    return any(topic_matches(pattern, topic) for pattern in allowed)


def may_subscribe(allowed: Sequence[str], topic_filter: str) -> bool:
    """Whether every topic `topic_filter` can match is allowed by one of `allowed`."""
    return any(filter_covers(pattern, topic_filter) for pattern in allowed)


def topic_filter_list(value: object) -> str | None:
    """An OPTIONS check: a non-empty list of valid topic filters (the broker-access adapters)."""
    if not isinstance(value, list | tuple) or not value:
        return "a non-empty list of topic filters"
    try:
        for item in value:
            validate_topic_filter(item)
    except MqttPublishError as exc:
        return f"a list of topic filters ({exc})"
    return None
