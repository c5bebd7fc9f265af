"""The OPTIONS of the external-broker adapter: checked at start-up, parsed once.

Nothing here imports gmqtt; `check_external_options` runs in the Django system check.
"""

from __future__ import annotations

import os
import socket
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import unquote, urlsplit

from gateway.options import (
    Backoff,
    Check,
    Option,
    OptionSet,
    ReconnectPolicy,
    is_int,
    positive_number,
    reconnect_option,
    tls_option,
)
from protocol_adapters.mqtt.device_options import (
    COMMANDS_OPTION,
    PRESENCE_OPTION,
    CommandsOptions,
    PresenceOptions,
)
from protocol_adapters.mqtt.options import COMMON_OPTION_KEYS, COMMON_OPTIONS, MqttOptions

__all__ = [
    "EXTERNAL_OPTIONS",
    "Backoff",
    "ExternalOptions",
    "FailoverOptions",
    "check_external_options",
    "default_client_id",
]

_SCHEMES: Final = {"mqtt": 1883, "tcp": 1883, "mqtts": 8883, "ssl": 8883}
_PROTOCOLS: Final[dict[Any, Literal[4, 5]]] = {5: 5, "5": 5, "3.1.1": 4}


def default_client_id() -> str:
    """``gateway-<host>-<pid>``: stable for the life of the process, across reconnects."""
    host = socket.gethostname().split(".")[0] or "host"
    return f"gateway-{host}-{os.getpid()}"[:64]


def _url(url: object) -> list[str]:
    if not isinstance(url, str):
        return [f'must be a str like "mqtt://host:1883", got {url!r}']
    parts = urlsplit(url)
    if parts.scheme not in _SCHEMES or not parts.hostname:
        return [f"must be mqtt://host[:port] or mqtts://host[:port], got {url!r}"]
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return [f"has an invalid port: {url!r}"]
    return []


def _rule(ok: Callable[[Any], bool], what: str) -> Check:
    return lambda value: None if ok(value) else what


EXTERNAL_OPTIONS: Final = OptionSet(
    COMMON_OPTIONS,
    Option("URL", "mqtt://127.0.0.1:1883", checks=_url),
    Option("CLIENT_ID", None, _rule(
        lambda v: v is None or (isinstance(v, str) and 0 < len(v) <= 65535),
        "a non-empty str or None",
    )),
    Option("PROTOCOL", 5, _rule(
        lambda v: not isinstance(v, bool) and v in _PROTOCOLS, '5 or "3.1.1"'
    )),
    Option("KEEPALIVE", 60, _rule(
        lambda v: is_int(v) and 0 <= v <= 65535, "an integer 0-65535 (seconds)"
    )),
    Option("CLEAN_START", False, _rule(lambda v: isinstance(v, bool), "True or False")),
    Option("SESSION_EXPIRY", 3600, _rule(
        lambda v: is_int(v) and 0 <= v <= 0xFFFFFFFF, "an integer 0-4294967295 (seconds)"
    )),
    Option("SHARED_GROUP", None, _rule(
        lambda v: v is None or (isinstance(v, str) and v != "" and not set(v) & set("/+#")),
        "None or a group name without '/', '+' or '#'",
    )),
    reconnect_option(0.5, 30.0),
    Option("CONNECT_TIMEOUT", 10.0, positive_number),
    Option("USERNAME", None, _rule(lambda v: v is None or isinstance(v, str), "a str or None")),
    Option("PASSWORD", None, _rule(lambda v: v is None or isinstance(v, str), "a str or None")),
    tls_option("CA_FILE", "CERT_FILE", "KEY_FILE", "INSECURE"),
    Option("FAILOVER", None, checks=lambda v: _failover_problems(v)),
    COMMANDS_OPTION,
    PRESENCE_OPTION,
)  # fmt: skip
"""Every OPTIONS key of `ExternalBroker`, with its default and check (docs/mqtt.md)."""


def check_external_options(options: Mapping[str, Any]) -> list[str]:
    """Every problem with an external-broker OPTIONS dict, one sentence each."""
    errors = EXTERNAL_OPTIONS.check(options)
    if options.get("FAILOVER") is not None and not errors:
        merged = EXTERNAL_OPTIONS.parse(options)
        if merged["CLEAN_START"] or merged["SESSION_EXPIRY"] == 0:
            errors.append(
                'OPTIONS["FAILOVER"] needs persistent sessions: CLEAN_START False and a'
                " SESSION_EXPIRY above 0 (a session that ends with its connection has nothing"
                " to adopt)"
            )
    return errors


@dataclass(frozen=True)
class FailoverOptions:
    """``FAILOVER`` parsed: seconds between heartbeats, of silence after which a process is
    gone, of quiet before an adopted session is ended, and of a survivor's claim on one."""

    heartbeat: float = 1.0
    expiry: float = 5.0
    quiet: float = 0.5
    lease: float = 120.0

    @classmethod
    def parse(cls, value: Mapping[str, Any] | None) -> FailoverOptions | None:
        if value is None:
            return None
        return cls(**{key.lower(): float(number) for key, number in value.items()})


_FAILOVER_KEYS: Final = ("HEARTBEAT", "EXPIRY", "QUIET", "LEASE")


def _failover_problems(value: object) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, Mapping):
        return [f"must be None or a dict with keys {', '.join(_FAILOVER_KEYS)}, got {value!r}"]
    problems = [f'["{key}"] is not an option' for key in value if key not in _FAILOVER_KEYS]
    problems += [
        f'["{key}"] must be a positive number of seconds'
        for key, number in value.items()
        if key in _FAILOVER_KEYS and positive_number(number) is not None
    ]
    heartbeat, expiry = value.get("HEARTBEAT", 1.0), value.get("EXPIRY", 5.0)
    if not problems and not heartbeat < expiry:
        problems.append('["HEARTBEAT"] must be shorter than ["EXPIRY"]')
    return problems


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
    commands: CommandsOptions | None = None
    presence: PresenceOptions | None = None
    failover: FailoverOptions | None = None

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
        merged = EXTERNAL_OPTIONS.parse(options)
        url = urlsplit(merged["URL"])
        secure = url.scheme in ("mqtts", "ssl") or merged["TLS"] is not None
        reconnect: ReconnectPolicy = merged["RECONNECT"]
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
            reconnect_initial=reconnect.initial,
            reconnect_max=reconnect.maximum,
            connect_timeout=float(merged["CONNECT_TIMEOUT"]),
            commands=merged["COMMANDS"],
            presence=merged["PRESENCE"],
            failover=FailoverOptions.parse(merged["FAILOVER"]),
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
