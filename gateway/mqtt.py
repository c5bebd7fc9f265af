"""Publishing MQTT messages from anywhere, and the MQTT topic rules every part checks.

`publish()` (sync) and `apublish()` (async) validate a message in the caller, then send it as
an ``mqtt.publish`` message on the channel layer channel `PUBLISH_CHANNEL`; the process that
holds the broker (or the broker connection) serves that channel and publishes. Importing this
module imports no protocol library and reads no settings. `request()` / `arequest()`
(commands that wait for the device's answer) come from `gateway.mqtt_requests`.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, Literal, cast

from gateway.exceptions import CommandTimeout, GatewayError, ImproperlyConfiguredGateway
from gateway.run_event import run_one_event
from gateway.types import ASGIApp, Message, MqttProperties, MqttPublishEvent, MqttScope

__all__ = [
    "MAX_PAYLOAD",
    "MAX_TOPIC_BYTES",
    "PUBLISH_CHANNEL",
    "SPEC_VERSION",
    "BrokerKind",
    "CommandResponse",
    "CommandTimeout",
    "InboundMessage",
    "InvalidPayload",
    "MqttPublishError",
    "PublishFunc",
    "apublish",
    "arequest",
    "build_mqtt_scope",
    "encode_payload",
    "filter_covers",
    "make_publish_event",
    "match_subscription",
    "publish",
    "request",
    "run_mqtt_app",
    "split_shared_subscription",
    "topic_matches",
    "validate_publish_event",
    "validate_topic_filter",
    "validate_topic_name",
]

PUBLISH_CHANNEL: Final = "gateway.mqtt.publish"
"""The channel layer channel the process holding the broker connection serves."""
MAX_PAYLOAD: Final = 262144
"""Default largest payload, in bytes (256 KiB); adapters take theirs from OPTIONS."""
MAX_TOPIC_BYTES: Final = 65535
"""MQTT's limit on a topic's UTF-8 length."""
_PROPERTY_KEYS: Final = frozenset(MqttProperties.__annotations__)
SPEC_VERSION: Final = "1.0"
"""The version of docs/specs/mqtt.md the scopes follow."""

BrokerKind = Literal["embedded", "external"]
PublishFunc = Callable[[MqttPublishEvent], Awaitable[None]]
"""An adapter's publish: put one validated ``mqtt.publish`` event on the wire."""


class MqttPublishError(GatewayError, ValueError):
    """A message cannot be published: bad topic, QoS, payload or properties."""


class InvalidPayload(GatewayError, ValueError):
    """A payload the application cannot read (not UTF-8 JSON); dead-lettered, never retried."""

    #: Retrying cannot help: the dispatcher dead-letters the message at once.
    retryable: ClassVar[bool] = False


# --- topic rules (MQTT 5, section 4.7) -------------------------------------------------------


def _check_text(kind: str, value: object) -> str:
    if not isinstance(value, str):
        raise MqttPublishError(f"MQTT {kind} must be a str, got {type(value).__name__}")
    if not value:
        raise MqttPublishError(f"MQTT {kind} must not be empty")
    if "\x00" in value:
        raise MqttPublishError(f"MQTT {kind} {value!r} contains a NUL character")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise MqttPublishError(f"MQTT {kind} {value!r} is not valid UTF-8: {exc}") from None
    if size > MAX_TOPIC_BYTES:
        raise MqttPublishError(f"MQTT {kind} is {size} bytes in UTF-8, over {MAX_TOPIC_BYTES}")
    return value


def validate_topic_name(topic: object) -> str:
    """Return `topic` if it is a topic name one may publish to, else raise MqttPublishError."""
    name = _check_text("topic", topic)
    if "+" in name or "#" in name:
        raise MqttPublishError(
            f"MQTT topic {name!r} contains a wildcard (+ or #); publish to a topic name, "
            "not a filter"
        )
    return name


def split_shared_subscription(topic_filter: str) -> tuple[str | None, str]:
    """``"$share/g/a/#"`` -> ``("g", "a/#")``; a plain filter -> ``(None, filter)``."""
    if not topic_filter.startswith("$share/"):
        return None, topic_filter
    _, group, *rest = topic_filter.split("/", 2)
    if not rest:
        raise MqttPublishError(f"shared subscription {topic_filter!r} has no topic filter")
    return group, rest[0]


def validate_topic_filter(topic_filter: object) -> str:
    """Return `topic_filter` if it is a valid subscription filter, else raise MqttPublishError."""
    text = _check_text("topic filter", topic_filter)
    group, inner = split_shared_subscription(text)
    if group is not None:
        if not group or "+" in group or "#" in group:
            raise MqttPublishError(
                f"shared subscription {text!r}: the group name must be non-empty, no wildcards"
            )
        _check_text("topic filter", inner)
    levels = inner.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            raise MqttPublishError(
                f"MQTT topic filter {text!r}: '#' must be a whole level and the last one"
            )
        if "+" in level and level != "+":
            raise MqttPublishError(f"MQTT topic filter {text!r}: '+' must be a whole level")
    return text


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Whether a topic name matches a (non-shared) filter, by MQTT's rules."""
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False  # wildcards at the start never match $SYS-like topics
    filter_levels = topic_filter.split("/")
    topic_levels = topic.split("/")
    for index, level in enumerate(filter_levels):
        if level == "#":
            return True  # "a/#" also matches "a" (the parent level)
        if index >= len(topic_levels):
            return False
        if level != "+" and level != topic_levels[index]:
            return False
    return len(filter_levels) == len(topic_levels)


def filter_covers(wide: str, narrow: str) -> bool:
    """Whether every topic matching filter `narrow` also matches filter `wide`.

    The one containment rule: routers minimise their subscriptions with it, and the embedded
    broker grants a SUBSCRIBE only when one of the client's allowed filters covers it.
    """
    wide_levels, narrow_levels = wide.split("/"), narrow.split("/")
    if narrow_levels[0].startswith("$") and wide_levels[0] in ("+", "#"):
        return False
    for index, level in enumerate(wide_levels):
        if level == "#":
            return True
        if index >= len(narrow_levels):
            return False
        other = narrow_levels[index]
        if other == "#" or (other == "+" and level != "+"):
            return False
        if level not in ("+", other):
            return False
    return len(wide_levels) == len(narrow_levels)


# --- payloads and publish events -------------------------------------------------------------


def encode_payload(payload: object) -> bytes:
    """bytes as they are, str in UTF-8, anything else as compact JSON."""
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, bytearray | memoryview):
        return bytes(payload)
    if isinstance(payload, str):
        return payload.encode("utf-8")
    try:
        return json.dumps(payload, separators=(",", ":")).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise MqttPublishError(
            f"MQTT payload is not bytes, str or JSON-serialisable: {exc}"
        ) from None


def _check_qos(qos: object) -> int:
    if isinstance(qos, bool) or qos not in (0, 1, 2):
        raise MqttPublishError(f"MQTT qos must be 0, 1 or 2, got {qos!r}")
    assert isinstance(qos, int)
    return qos


def _check_properties(properties: object) -> MqttProperties:
    if not isinstance(properties, Mapping):
        raise MqttPublishError(f"MQTT properties must be a dict, got {type(properties).__name__}")
    unknown = sorted(str(key) for key in properties if key not in _PROPERTY_KEYS)
    if unknown:
        known = ", ".join(sorted(_PROPERTY_KEYS))
        raise MqttPublishError(f"unknown MQTT properties {unknown}; known: {known}")
    return cast(MqttProperties, dict(properties))


def make_publish_event(
    topic: str,
    payload: object,
    qos: int = 0,
    retain: bool = False,
    *,
    properties: Mapping[str, Any] | None = None,
    max_payload: int = MAX_PAYLOAD,
) -> MqttPublishEvent:
    """Validate a message and return it as an ``mqtt.publish`` event; MqttPublishError if bad."""
    data = encode_payload(payload)
    if len(data) > max_payload:
        raise MqttPublishError(
            f"MQTT payload for {topic!r} is {len(data)} bytes, over the limit of {max_payload}"
        )
    if not isinstance(retain, bool):
        raise MqttPublishError(f"MQTT retain must be True or False, got {retain!r}")
    event: MqttPublishEvent = {
        "type": "mqtt.publish",
        "topic": validate_topic_name(topic),
        "payload": data,
        "qos": _check_qos(qos),  # type: ignore[typeddict-item]
        "retain": retain,
    }
    if properties:
        event["properties"] = _check_properties(properties)
    return event


def validate_publish_event(
    event: Mapping[str, Any], max_payload: int = MAX_PAYLOAD
) -> MqttPublishEvent:
    """Check an ``mqtt.publish`` event an application sent; return it with defaults filled in."""
    if event.get("type") != "mqtt.publish":
        raise MqttPublishError(f"expected an 'mqtt.publish' event, got type {event.get('type')!r}")
    if "topic" not in event or "payload" not in event:
        raise MqttPublishError("an 'mqtt.publish' event needs 'topic' and 'payload'")
    payload = event["payload"]
    if not isinstance(payload, bytes | bytearray | memoryview):
        raise MqttPublishError(
            f"'mqtt.publish' payload must be bytes, got {type(payload).__name__}"
        )
    return make_publish_event(
        event["topic"],
        payload,
        event.get("qos", 0),
        event.get("retain", False),
        properties=event.get("properties"),
        max_payload=max_payload,
    )


# --- publishing through the channel layer ----------------------------------------------------


async def apublish(
    topic: str,
    payload: object,
    qos: int = 0,
    retain: bool = False,
    *,
    properties: Mapping[str, Any] | None = None,
    alias: str = "default",
    max_payload: int = MAX_PAYLOAD,
) -> None:
    """Publish an MQTT message from async code, through the channel layer `alias`."""
    event = make_publish_event(
        topic, payload, qos, retain, properties=properties, max_payload=max_payload
    )
    from gateway.layers import get_channel_layer

    layer = get_channel_layer(alias)
    if layer is None:
        raise ImproperlyConfiguredGateway(
            f"gateway.mqtt.publish needs a channel layer, but CHANNEL_LAYERS has no {alias!r}"
        )
    await layer.send(PUBLISH_CHANNEL, dict(event))


def publish(
    topic: str,
    payload: object,
    qos: int = 0,
    retain: bool = False,
    *,
    properties: Mapping[str, Any] | None = None,
    alias: str = "default",
    max_payload: int = MAX_PAYLOAD,
) -> None:
    """Publish an MQTT message from sync code (a view, an admin action, a command)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError(
            "gateway.mqtt.publish() was called from a running event loop; "
            "use 'await gateway.mqtt.apublish(...)' in async code"
        )
    from asgiref.sync import async_to_sync

    send = async_to_sync(apublish)
    send(topic, payload, qos, retain, properties=properties, alias=alias, max_payload=max_payload)


# --- inbound messages and their scopes (docs/specs/mqtt.md) ----------------------------------


@dataclass(frozen=True)
class InboundMessage:
    """One inbound PUBLISH, as an adapter hands it to the intake."""

    topic: str
    payload: bytes
    qos: Literal[0, 1, 2] = 0
    retain: bool = False
    dup: bool = False
    message_id: int | None = None
    client_id: str | None = None
    device_id: str | None = None
    subscription: str = "#"
    """The filter it came in on, without ``$share/<group>/`` (see `match_subscription`)."""
    properties: MqttProperties = field(default_factory=lambda: MqttProperties())


def build_mqtt_scope(
    message: InboundMessage,
    *,
    adapter: str,
    broker: BrokerKind,
    state: Mapping[str, Any] | None = None,
    dup: bool | None = None,
) -> MqttScope:
    """The ``mqtt`` scope of docs/specs/mqtt.md for one message; ``dup`` overrides its flag."""
    scope: MqttScope = {
        "type": "mqtt",
        "asgi": {"version": "3.0", "spec_version": SPEC_VERSION},
        "topic": message.topic,
        "qos": message.qos,
        "retain": message.retain,
        "dup": message.dup if dup is None else dup,
        "message_id": message.message_id,
        "client_id": message.client_id,
        "device_id": message.device_id,
        "broker": broker,
        "adapter": adapter,
        "subscription": message.subscription,
        "properties": MqttProperties(**message.properties),
    }
    if state is not None:
        # A shallow copy, as for HTTP: the app may add keys without touching the lifespan's.
        scope["state"] = copy.copy(dict(state))
    return scope


def match_subscription(filters: list[str], topic: str) -> str | None:
    """The first filter (``$share/<group>/`` stripped) that `topic` matches, or None."""
    for topic_filter in filters:
        _, plain = split_shared_subscription(topic_filter)
        if topic_matches(plain, topic):
            return plain
    return None


async def run_mqtt_app(
    app: ASGIApp,
    scope: Mapping[str, Any],
    payload: bytes,
    publish: PublishFunc,
    *,
    max_payload: int = MAX_PAYLOAD,
    stopped: asyncio.Event | None = None,
) -> None:
    """Call `app` on one message: receive gives ``mqtt.message``, send validates and publishes."""

    async def send(event: Message) -> None:
        if event.get("type") != "mqtt.publish":
            raise ValueError(
                f"an mqtt application sent {event.get('type')!r}; "
                "the only event it may send is 'mqtt.publish'"
            )
        await publish(validate_publish_event(event, max_payload))

    message: Message = {"type": "mqtt.message", "payload": payload}
    await run_one_event(app, scope, message, send, stopped=stopped)


from gateway.mqtt_requests import CommandResponse, arequest, request  # noqa: E402
