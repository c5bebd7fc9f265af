"""The OPTIONS keys both MQTT adapters share, declared once (`gateway.options`).

Each adapter's own `OptionSet` includes `COMMON_OPTIONS`; `MqttOptions` is their parsed form.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from gateway.mqtt import MAX_PAYLOAD, MqttPublishError, validate_topic_filter
from gateway.options import Option, OptionSet, flag, is_int, positive_int, retry_option
from gateway.pipeline import RetryPolicy

__all__ = [
    "COMMON_OPTIONS",
    "COMMON_OPTION_KEYS",
    "DEFAULT_OPTIONS",
    "MqttOptions",
    "check_common_options",
]

_PROTOCOL_MAX_PAYLOAD: Final = 268435455  # the largest remaining length MQTT can encode


def _max_payload(value: object) -> str | None:
    ok = is_int(value) and 0 < value <= _PROTOCOL_MAX_PAYLOAD  # type: ignore[operator]
    return None if ok else f"a positive integer up to {_PROTOCOL_MAX_PAYLOAD}"


def _qos(value: object) -> str | None:
    return None if is_int(value) and value in (0, 1, 2) else "0, 1 or 2"


def _alias(value: object) -> str | None:
    return None if isinstance(value, str) and value != "" else "a CHANNEL_LAYERS alias"


def _subscriptions(value: object) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list | tuple) or not value:
        return [f"must be None or a non-empty list of filters, got {value!r}"]
    errors = []
    for item in value:
        try:
            validate_topic_filter(item)
        except MqttPublishError as exc:
            errors.append(f"has an invalid filter {item!r}: {exc}")
    return errors


COMMON_OPTIONS: Final = OptionSet(
    Option("MAX_IN_FLIGHT", 100, positive_int),
    retry_option(),
    Option("MAX_PAYLOAD", MAX_PAYLOAD, _max_payload),
    Option("SUBSCRIPTIONS", None, checks=_subscriptions),
    Option("QOS", 1, _qos),
    Option("LAYER_ALIAS", "default", _alias),
    Option("SERVE_PUBLISH_CHANNEL", True, flag),
)
"""The OPTIONS keys both MQTT adapters accept; each adapter's set adds its own."""
DEFAULT_OPTIONS: Final = COMMON_OPTIONS.defaults()
COMMON_OPTION_KEYS: Final = COMMON_OPTIONS.keys


def check_common_options(options: Mapping[str, Any]) -> list[str]:
    """Every problem with the shared OPTIONS keys, one sentence each; other keys are ignored."""
    return COMMON_OPTIONS.check({k: v for k, v in options.items() if k in COMMON_OPTION_KEYS})


@dataclass
class MqttOptions:
    """The OPTIONS keys both MQTT adapters share, parsed; see COMMON_OPTIONS for defaults."""

    max_in_flight: int = 100
    retry: RetryPolicy = field(default_factory=lambda: RetryPolicy(3, 0.5, 30.0))
    max_payload: int = MAX_PAYLOAD
    subscriptions: list[str] | None = None
    qos: Literal[0, 1, 2] = 1
    layer_alias: str = "default"
    serve_publish_channel: bool = True

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> MqttOptions:
        """Parse an adapter's OPTIONS; ValueError listing every problem of the shared keys."""
        errors = check_common_options(options)
        if errors:
            raise ValueError("; ".join(errors))
        values = COMMON_OPTIONS.parse({k: v for k, v in options.items() if k in COMMON_OPTION_KEYS})
        subscriptions = values["SUBSCRIPTIONS"]
        return cls(
            max_in_flight=values["MAX_IN_FLIGHT"],
            retry=values["RETRY"],
            max_payload=values["MAX_PAYLOAD"],
            subscriptions=None if subscriptions is None else list(subscriptions),
            qos=values["QOS"],
            layer_alias=values["LAYER_ALIAS"],
            serve_publish_channel=values["SERVE_PUBLISH_CHANNEL"],
        )
