"""The OPTIONS of the external-broker adapter: checked at start-up, parsed once.

Nothing here imports gmqtt; `check_external_options` runs in the Django system check.
"""

from __future__ import annotations

import os
import random
import socket
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import unquote, urlsplit

from protocol_adapters.mqtt.options import COMMON_OPTION_KEYS, MqttOptions, check_common_options

__all__ = [
    "EXTERNAL_DEFAULTS",
    "Backoff",
    "ExternalOptions",
    "check_external_options",
    "default_client_id",
]

EXTERNAL_DEFAULTS: Final[dict[str, Any]] = {
    "URL": "mqtt://127.0.0.1:1883",
    "CLIENT_ID": None,
    "PROTOCOL": 5,
    "KEEPALIVE": 60,
    "CLEAN_START": False,
    "SESSION_EXPIRY": 3600,
    "SHARED_GROUP": None,
    "RECONNECT": {"INITIAL": 0.5, "MAX": 30.0},
    "CONNECT_TIMEOUT": 10.0,
    "USERNAME": None,
    "PASSWORD": None,
    "TLS": None,
}
_TLS_KEYS: Final = ("CA_FILE", "CERT_FILE", "KEY_FILE", "INSECURE")
_SCHEMES: Final = {"mqtt": 1883, "tcp": 1883, "mqtts": 8883, "ssl": 8883}
_PROTOCOLS: Final[dict[Any, Literal[4, 5]]] = {5: 5, "5": 5, "3.1.1": 4}


def default_client_id() -> str:
    """``gateway-<host>-<pid>``: stable for the life of the process, across reconnects."""
    host = socket.gethostname().split(".")[0] or "host"
    return f"gateway-{host}-{os.getpid()}"[:64]


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_url(url: object) -> list[str]:
    if not isinstance(url, str):
        return [f'OPTIONS["URL"] must be a str like "mqtt://host:1883", got {url!r}']
    parts = urlsplit(url)
    if parts.scheme not in _SCHEMES or not parts.hostname:
        return [f'OPTIONS["URL"] must be mqtt://host[:port] or mqtts://host[:port], got {url!r}']
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return [f'OPTIONS["URL"] has an invalid port: {url!r}']
    return []


def _check_reconnect(value: object) -> list[str]:
    if not isinstance(value, Mapping):
        return [f'OPTIONS["RECONNECT"] must be a dict with INITIAL and MAX, got {value!r}']
    errors = [
        f'OPTIONS["RECONNECT"]["{k}"] is not a known key'
        for k in value
        if k not in ("INITIAL", "MAX")
    ]
    for key in ("INITIAL", "MAX"):
        if key in value and not (_is_number(value[key]) and value[key] > 0):
            errors.append(f'OPTIONS["RECONNECT"]["{key}"] must be a positive number of seconds')
    return errors


def _check_tls(value: object) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, Mapping):
        return [f'OPTIONS["TLS"] must be None or a dict with {", ".join(_TLS_KEYS)}, got {value!r}']
    errors = [f'OPTIONS["TLS"]["{k}"] is not a known key' for k in value if k not in _TLS_KEYS]
    for key in ("CA_FILE", "CERT_FILE", "KEY_FILE"):
        path = value.get(key)
        if path is not None and not (isinstance(path, str) and os.path.isfile(path)):
            errors.append(
                f'OPTIONS["TLS"]["{key}"] must be the path of a readable file, got {path!r}'
            )
    if "INSECURE" in value and not isinstance(value["INSECURE"], bool):
        errors.append('OPTIONS["TLS"]["INSECURE"] must be True or False')
    if value.get("KEY_FILE") and not value.get("CERT_FILE"):
        errors.append('OPTIONS["TLS"]["KEY_FILE"] needs OPTIONS["TLS"]["CERT_FILE"]')
    return errors


_Rule = tuple[Callable[[Any], bool], str]
_RULES: Final[dict[str, _Rule]] = {
    "CLIENT_ID": (
        lambda v: v is None or (isinstance(v, str) and 0 < len(v) <= 65535),
        "a non-empty str or None",
    ),
    "PROTOCOL": (lambda v: not isinstance(v, bool) and v in _PROTOCOLS, '5 or "3.1.1"'),
    "KEEPALIVE": (
        lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 65535,
        "an integer 0-65535 (seconds)",
    ),
    "CLEAN_START": (lambda v: isinstance(v, bool), "True or False"),
    "SESSION_EXPIRY": (
        lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 0xFFFFFFFF,
        "an integer 0-4294967295 (seconds)",
    ),
    "SHARED_GROUP": (
        lambda v: v is None or (isinstance(v, str) and v != "" and not set(v) & set("/+#")),
        "None or a group name without '/', '+' or '#'",
    ),
    "CONNECT_TIMEOUT": (lambda v: _is_number(v) and v > 0, "a positive number of seconds"),
    "USERNAME": (lambda v: v is None or isinstance(v, str), "a str or None"),
    "PASSWORD": (lambda v: v is None or isinstance(v, str), "a str or None"),
}


def check_external_options(options: Mapping[str, Any]) -> list[str]:
    """Every problem with an external-broker OPTIONS dict, one sentence each."""
    known = COMMON_OPTION_KEYS | set(EXTERNAL_DEFAULTS)
    errors = [f'OPTIONS["{key}"] is not a known key' for key in options if key not in known]
    errors += check_common_options(options)
    for key, (ok, what) in _RULES.items():
        if key in options and not ok(options[key]):
            errors.append(f'OPTIONS["{key}"] must be {what}, got {options[key]!r}')
    errors += _check_url(options.get("URL", EXTERNAL_DEFAULTS["URL"]))
    if "RECONNECT" in options:
        errors += _check_reconnect(options["RECONNECT"])
    errors += _check_tls(options.get("TLS"))
    return errors


@dataclass(frozen=True)
class ExternalOptions:
    """OPTIONS of `ExternalBroker`, parsed: where to connect, as whom, with which session."""

    common: MqttOptions
    host: str
    port: int
    tls: ssl.SSLContext | None
    username: str | None
    password: str | None
    client_id: str
    protocol: Literal[4, 5]
    keepalive: int
    clean_start: bool
    session_expiry: int
    shared_group: str | None
    reconnect_initial: float
    reconnect_max: float
    connect_timeout: float

    @property
    def address(self) -> str:
        scheme = "mqtts" if self.tls is not None else "mqtt"
        return f"{scheme}://{self.host}:{self.port}"

    def filters(self, topics: list[str]) -> list[str]:
        """The filters to subscribe to: `topics`, in ``$share/<group>/`` when shared."""
        if self.shared_group is None:
            return list(topics)
        return [t if t.startswith("$share/") else f"$share/{self.shared_group}/{t}" for t in topics]

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> ExternalOptions:
        """Parse checked OPTIONS; ValueError listing every problem otherwise."""
        errors = check_external_options(options)
        if errors:
            raise ValueError("; ".join(errors))
        merged = {**EXTERNAL_DEFAULTS, **options}
        url = urlsplit(merged["URL"])
        secure = url.scheme in ("mqtts", "ssl") or merged["TLS"] is not None
        reconnect = {**EXTERNAL_DEFAULTS["RECONNECT"], **merged["RECONNECT"]}
        return cls(
            common=MqttOptions.from_options(
                {k: v for k, v in options.items() if k in COMMON_OPTION_KEYS}
            ),
            host=url.hostname or "127.0.0.1",
            port=url.port or _SCHEMES[url.scheme],
            tls=_ssl_context(merged["TLS"] or {}) if secure else None,
            username=merged["USERNAME"]
            if merged["USERNAME"] is not None
            else _unquote(url.username),
            password=merged["PASSWORD"]
            if merged["PASSWORD"] is not None
            else _unquote(url.password),
            client_id=merged["CLIENT_ID"] or default_client_id(),
            protocol=_PROTOCOLS[merged["PROTOCOL"]],
            keepalive=merged["KEEPALIVE"],
            clean_start=merged["CLEAN_START"],
            session_expiry=merged["SESSION_EXPIRY"],
            shared_group=merged["SHARED_GROUP"],
            reconnect_initial=float(reconnect["INITIAL"]),
            reconnect_max=float(reconnect["MAX"]),
            connect_timeout=float(merged["CONNECT_TIMEOUT"]),
        )


def _unquote(value: str | None) -> str | None:
    return None if value is None else unquote(value)


def _ssl_context(tls: Mapping[str, Any]) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=tls.get("CA_FILE"))
    if tls.get("CERT_FILE"):
        context.load_cert_chain(tls["CERT_FILE"], tls.get("KEY_FILE"))
    if tls.get("INSECURE"):
        # For test brokers with self-signed certificates only; says so in the docs.
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class Backoff:
    """Capped exponential backoff with jitter: INITIAL, 2x INITIAL, ... up to MAX."""

    def __init__(self, initial: float, maximum: float) -> None:
        self.initial = initial
        self.maximum = maximum
        self.attempt = 0

    def next(self) -> float:
        """The delay before the next attempt; each call counts one attempt."""
        self.attempt += 1
        base = min(self.maximum, self.initial * 2 ** min(self.attempt - 1, 32))
        # Jitter keeps a fleet of gateways from reconnecting in lock step after a broker restart.
        return float(base * random.uniform(0.5, 1.0))

    def reset(self) -> None:
        self.attempt = 0
