"""The embedded broker's OPTIONS, declared once: the shared MQTT keys plus its own."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from gateway.adapters import DeployRisk, is_public_host
from gateway.mqtt import MqttPublishError, validate_topic_filter
from gateway.options import (
    Option,
    OptionSet,
    is_int,
    logins_option,
    one_of,
    positive_int,
    positive_number,
    tls_option,
)
from protocol_adapters.mqtt.device_options import COMMANDS_OPTION
from protocol_adapters.mqtt.embedded_acl import DEFAULT_ACL
from protocol_adapters.mqtt.embedded_broker import BrokerLimits
from protocol_adapters.mqtt.embedded_sessions import QueueLimits
from protocol_adapters.mqtt.options import COMMON_OPTIONS

__all__ = ["EMBEDDED_OPTIONS", "broker_limits", "embedded_deploy_risks"]


def _host(value: object) -> str | None:
    return None if isinstance(value, str) and value else "a host name or IP address"


def _port(value: object) -> str | None:
    return None if is_int(value) and 0 <= value <= 65535 else "an integer 0-65535"  # type: ignore[operator]


def _optional_port(value: object) -> str | None:
    return None if value is None else _port(value)


def _dotted_path(value: object) -> str | None:
    ok = value is None or (isinstance(value, str) and "." in value)
    return None if ok else "a dotted path to a class"


def _acl(value: Any) -> list[str]:
    if value is None:
        return []
    patterns = [value] if isinstance(value, str) else value
    if not isinstance(patterns, list | tuple) or not patterns:
        return [f"must be None, a topic filter or a list of them, got {value!r}"]
    errors = []
    for pattern in patterns:
        try:
            validate_topic_filter(str(pattern).replace("{device_id}", "x"))
        except MqttPublishError as exc:
            errors.append(f"has an invalid filter {pattern!r}: {exc}")
    return errors


EMBEDDED_OPTIONS: Final = OptionSet(
    COMMON_OPTIONS,
    Option("HOST", "127.0.0.1", _host),
    Option("PORT", 1883, _port),
    Option("WS_PORT", None, _optional_port),
    tls_option("CERT_FILE", "KEY_FILE", "PORT", required=("CERT_FILE", "KEY_FILE")),
    Option("AUTH", "devices", one_of("devices", "anonymous")),
    Option("ACL", list(DEFAULT_ACL), checks=_acl),
    Option("DEVICE_STORE", None, _dotted_path),
    logins_option(),
    Option("CONNECT_TIMEOUT", 10.0, positive_number),
    Option("MAX_CONNECTIONS", 10_000, positive_int),
    Option("MAX_CONNECTIONS_PER_ADDRESS", 1_000, positive_int),
    Option("MAX_INFLIGHT_MESSAGES", 20, positive_int),
    Option("MAX_QUEUED_MESSAGES", 1_000, positive_int),
    Option("MAX_QUEUED_BYTES", 16 * 1024 * 1024, positive_int),
    Option("SESSION_EXPIRY", 86_400.0, positive_number),
    Option("MAX_RETAINED", 100_000, positive_int),
    COMMANDS_OPTION,
)
"""Every OPTIONS key of `EmbeddedBroker`, with its default and check (docs/mqtt.md)."""


def embedded_deploy_risks(options: Mapping[str, Any]) -> list[DeployRisk]:
    """Anonymous logins on a public address, for ``check --deploy`` (gateway.W105)."""
    values = EMBEDDED_OPTIONS.parse(options)
    if values["AUTH"] != "anonymous" or not is_public_host(values["HOST"]):
        return []
    return [
        DeployRisk(
            "gateway.W105",
            f'OPTIONS["AUTH"] is "anonymous" on the public address {values["HOST"]!r}:'
            " anyone can publish to and subscribe to every topic the ACL allows.",
            'Use AUTH "devices" (per-device logins and topics), or listen on 127.0.0.1.',
        )
    ]


def broker_limits(settings: Mapping[str, Any]) -> BrokerLimits:
    """The sessions' queue limits, expiry and retained-message cap from parsed OPTIONS."""
    queue = QueueLimits(
        max_inflight=settings["MAX_INFLIGHT_MESSAGES"],
        max_messages=settings["MAX_QUEUED_MESSAGES"],
        max_bytes=settings["MAX_QUEUED_BYTES"],
    )
    return BrokerLimits(queue, float(settings["SESSION_EXPIRY"]), settings["MAX_RETAINED"])
