"""The OPTIONS keys both MQTT adapters share: defaults, checks that name each bad key, parsing.

Each adapter's ``check_options`` calls `check_common_options` and adds its own keys' checks;
``COMMON_OPTION_KEYS`` tells it which keys are already taken care of.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from gateway.mqtt import MAX_PAYLOAD, MqttPublishError, validate_topic_filter
from gateway.pipeline import RetryPolicy

__all__ = ["COMMON_OPTION_KEYS", "DEFAULT_OPTIONS", "MqttOptions", "check_common_options"]

_PROTOCOL_MAX_PAYLOAD: Final = 268435455  # the largest remaining length MQTT can encode

DEFAULT_OPTIONS: Final[dict[str, Any]] = {
    "MAX_IN_FLIGHT": 100,
    "RETRY": {"ATTEMPTS": 3, "INITIAL_BACKOFF": 0.5, "MAX_BACKOFF": 30.0},
    "MAX_PAYLOAD": MAX_PAYLOAD,
    "SUBSCRIPTIONS": None,
    "QOS": 1,
    "LAYER_ALIAS": "default",
    "SERVE_PUBLISH_CHANNEL": True,
}
COMMON_OPTION_KEYS: Final = frozenset(DEFAULT_OPTIONS)
"""The OPTIONS keys both adapters accept; an adapter's check_options adds its own."""
_RETRY_KEYS: Final = ("ATTEMPTS", "INITIAL_BACKOFF", "MAX_BACKOFF")


# --- options ---------------------------------------------------------------------------------


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_retry(retry: object) -> list[str]:
    if not isinstance(retry, Mapping):
        return [f'OPTIONS["RETRY"] must be a dict with {", ".join(_RETRY_KEYS)}, got {retry!r}']
    errors = [
        f'OPTIONS["RETRY"]["{key}"] is not a known key' for key in retry if key not in _RETRY_KEYS
    ]
    attempts = retry.get("ATTEMPTS", 1)
    if not (_is_int(attempts) and attempts >= 1):
        errors.append(f'OPTIONS["RETRY"]["ATTEMPTS"] must be an integer >= 1, got {attempts!r}')
    for key in ("INITIAL_BACKOFF", "MAX_BACKOFF"):
        value = retry.get(key, 0)
        if not (_is_number(value) and value >= 0):
            errors.append(
                f'OPTIONS["RETRY"]["{key}"] must be a number of seconds >= 0, got {value!r}'
            )
    return errors


def _check_subscriptions(value: object) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list | tuple) or not value:
        return [
            f'OPTIONS["SUBSCRIPTIONS"] must be None or a non-empty list of filters, got {value!r}'
        ]
    errors = []
    for item in value:
        try:
            validate_topic_filter(item)
        except MqttPublishError as exc:
            errors.append(f'OPTIONS["SUBSCRIPTIONS"] has an invalid filter {item!r}: {exc}')
    return errors


def check_common_options(options: Mapping[str, Any]) -> list[str]:
    """Every problem with the shared OPTIONS keys, one sentence each; unknown keys are ignored."""
    errors: list[str] = []

    def rule(key: str, ok: Callable[[Any], bool], what: str) -> None:
        if key in options and not ok(options[key]):
            errors.append(f'OPTIONS["{key}"] must be {what}, got {options[key]!r}')

    rule("MAX_IN_FLIGHT", lambda v: _is_int(v) and v > 0, "a positive integer")
    rule(
        "MAX_PAYLOAD",
        lambda v: _is_int(v) and 0 < v <= _PROTOCOL_MAX_PAYLOAD,
        f"a positive integer up to {_PROTOCOL_MAX_PAYLOAD}",
    )
    rule("QOS", lambda v: _is_int(v) and v in (0, 1, 2), "0, 1 or 2")
    rule("LAYER_ALIAS", lambda v: isinstance(v, str) and v != "", "a CHANNEL_LAYERS alias")
    rule("SERVE_PUBLISH_CHANNEL", lambda v: isinstance(v, bool), "True or False")
    if "RETRY" in options:
        errors.extend(_check_retry(options["RETRY"]))
    if "SUBSCRIPTIONS" in options:
        errors.extend(_check_subscriptions(options["SUBSCRIPTIONS"]))
    return errors


@dataclass
class MqttOptions:
    """The OPTIONS keys both MQTT adapters share, parsed; see DEFAULT_OPTIONS for defaults."""

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
        merged = {**DEFAULT_OPTIONS, **options}
        retry = {**DEFAULT_OPTIONS["RETRY"], **merged["RETRY"]}
        subscriptions = merged["SUBSCRIPTIONS"]
        return cls(
            max_in_flight=merged["MAX_IN_FLIGHT"],
            retry=RetryPolicy(
                retry["ATTEMPTS"], float(retry["INITIAL_BACKOFF"]), float(retry["MAX_BACKOFF"])
            ),
            max_payload=merged["MAX_PAYLOAD"],
            subscriptions=None if subscriptions is None else list(subscriptions),
            qos=merged["QOS"],
            layer_alias=merged["LAYER_ALIAS"],
            serve_publish_channel=merged["SERVE_PUBLISH_CHANNEL"],
        )
