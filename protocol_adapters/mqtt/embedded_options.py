"""The embedded broker's own OPTIONS keys, their defaults and their checks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from gateway.mqtt import MqttPublishError, validate_topic_filter
from protocol_adapters.mqtt.embedded_acl import DEFAULT_ACL

__all__ = ["EMBEDDED_DEFAULTS", "check_embedded_options"]

EMBEDDED_DEFAULTS: Final[dict[str, Any]] = {
    "HOST": "127.0.0.1",
    "PORT": 1883,
    "WS_PORT": None,
    "TLS": None,
    "AUTH": "devices",
    "ACL": list(DEFAULT_ACL),
    "DEVICE_STORE": None,
    "CONNECT_TIMEOUT": 10.0,
    "MAX_CONNECTIONS": 10_000,
    "MAX_CONNECTIONS_PER_ADDRESS": 1_000,
    "MAX_INFLIGHT_MESSAGES": 20,
    "MAX_QUEUED_MESSAGES": 1_000,
    "MAX_QUEUED_BYTES": 16 * 1024 * 1024,
    "SESSION_EXPIRY": 86_400.0,
    "MAX_RETAINED": 100_000,
}
_POSITIVE: Final = (
    "CONNECT_TIMEOUT",
    "MAX_CONNECTIONS",
    "MAX_CONNECTIONS_PER_ADDRESS",
    "MAX_INFLIGHT_MESSAGES",
    "MAX_QUEUED_MESSAGES",
    "MAX_QUEUED_BYTES",
    "SESSION_EXPIRY",
    "MAX_RETAINED",
)
_FLOATS: Final = ("CONNECT_TIMEOUT", "SESSION_EXPIRY")
_TLS_KEYS: Final = ("CERT_FILE", "KEY_FILE", "PORT")


def _is_port(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 65535


def _check_tls(tls: object) -> list[str]:
    if tls is None:
        return []
    if not isinstance(tls, Mapping):
        return [f'OPTIONS["TLS"] must be None or a dict with {", ".join(_TLS_KEYS)}, got {tls!r}']
    errors = [f'OPTIONS["TLS"]["{key}"] is not a known key' for key in tls if key not in _TLS_KEYS]
    for key in ("CERT_FILE", "KEY_FILE"):
        if not isinstance(tls.get(key), str) or not tls.get(key):
            errors.append(f'OPTIONS["TLS"]["{key}"] must be the path of a PEM file')
    if not _is_port(tls.get("PORT", 8883)):
        errors.append(f'OPTIONS["TLS"]["PORT"] must be an integer 0-65535, got {tls.get("PORT")!r}')
    return errors


def _check_acl(acl: object) -> list[str]:
    if acl is None:
        return []
    patterns = [acl] if isinstance(acl, str) else acl
    if not isinstance(patterns, list | tuple) or not patterns:
        return [f'OPTIONS["ACL"] must be None, a topic filter or a list of them, got {acl!r}']
    errors = []
    for pattern in patterns:
        try:
            validate_topic_filter(str(pattern).replace("{device_id}", "x"))
        except MqttPublishError as exc:
            errors.append(f'OPTIONS["ACL"] has an invalid filter {pattern!r}: {exc}')
    return errors


def _check_limits(options: Mapping[str, Any]) -> list[str]:
    errors = []
    for key in _POSITIVE:
        value = options.get(key, EMBEDDED_DEFAULTS[key])
        kinds = (int, float) if key in _FLOATS else (int,)
        if isinstance(value, bool) or not isinstance(value, kinds) or value <= 0:
            kind = "number" if key in _FLOATS else "integer"
            errors.append(f'OPTIONS["{key}"] must be a positive {kind}, got {value!r}')
    return errors


def check_embedded_options(options: Mapping[str, Any]) -> list[str]:
    """Every problem with the embedded broker's own keys, one sentence each."""
    errors = []
    host = options.get("HOST", "127.0.0.1")
    if not isinstance(host, str) or not host:
        errors.append(f'OPTIONS["HOST"] must be a host name or IP address, got {host!r}')
    if not _is_port(options.get("PORT", 1883)):
        errors.append(f'OPTIONS["PORT"] must be an integer 0-65535, got {options["PORT"]!r}')
    ws_port = options.get("WS_PORT")
    if ws_port is not None and not _is_port(ws_port):
        errors.append(f'OPTIONS["WS_PORT"] must be None or an integer 0-65535, got {ws_port!r}')
    store = options.get("DEVICE_STORE")
    if store is not None and (not isinstance(store, str) or "." not in store):
        errors.append(f'OPTIONS["DEVICE_STORE"] must be a dotted path to a class, got {store!r}')
    if options.get("AUTH", "devices") not in ("devices", "anonymous"):
        errors.append(f'OPTIONS["AUTH"] must be "devices" or "anonymous", got {options["AUTH"]!r}')
    errors += _check_limits(options)
    return errors + _check_tls(options.get("TLS")) + _check_acl(options.get("ACL"))
