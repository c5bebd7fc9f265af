"""The GATEWAY setting: defaults, typed access, and validation that reports every mistake.

``gateway_settings`` reads ``settings.GATEWAY`` on first access (never at import), merges it
over ``DEFAULTS`` and re-reads it when a test overrides the setting. `gateway.conf_checks`'s
``validate()`` returns every problem at once; the system check in ``django_app.checks`` turns
them into errors.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, cast

from django.core.signals import setting_changed
from django.utils.module_loading import import_string

from gateway.overrides import apply_overrides
from gateway.turns import DEFAULT_SHARE

if TYPE_CHECKING:
    from gateway.pipeline import DeadLetterHook

__all__ = [
    "DEFAULTS",
    "AdapterSettings",
    "GatewaySettings",
    "HTTPSettings",
    "Problem",
    "gateway_settings",
]

LoopName = Literal["auto", "asyncio", "uvloop"]

HTTP_DEFAULTS: Final[dict[str, Any]] = {
    "ENABLED": True,
    "HOST": "127.0.0.1",
    "PORT": 8000,
    "ROOT_PATH": "",
    "PROXY_HEADERS": False,
    "FORWARDED_ALLOW_IPS": "127.0.0.1",
    "WS_MAX_SIZE": 1048576,
    "WS_PING_INTERVAL": 20.0,
    "WS_PING_TIMEOUT": 20.0,
    "WS_PER_MESSAGE_DEFLATE": False,
    "BACKLOG": 2048,
    "LIMIT_CONCURRENCY": None,
    "SYNC_THREADS": 4,
    "SYNC_THREADS_BUSY": 1,
}
ADAPTER_DEFAULTS: Final[dict[str, Any]] = {"ENABLED": True, "OPTIONS": {}}
DEFAULTS: Final[dict[str, Any]] = {
    "HTTP": HTTP_DEFAULTS,
    "HEALTH_PATH": "/-/health",
    "METRICS_PATH": "/-/metrics",
    "METRICS_ACCESS": None,
    "SHUTDOWN_TIMEOUT": 10.0,
    "DEAD_LETTER_HANDLER": "django_app.deadletters.store_dead_letter",
    "LOOP": "auto",
    "SWITCH_INTERVAL": None,
    "LOOP_SHARE": DEFAULT_SHARE,
    "DEVICE_STATE_MAX_BYTES": 65536,
    "LOG_FORMAT": "text",
    "ADAPTERS": {},
}


@dataclass(frozen=True)
class Problem:
    """One mistake in the GATEWAY setting; `message` names the setting."""

    id: str
    setting: str
    message: str
    hint: str | None = None

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class HTTPSettings:
    """GATEWAY["HTTP"]: the uvicorn listener for HTTP and WebSocket."""

    enabled: bool
    host: str
    port: int
    root_path: str
    proxy_headers: bool
    forwarded_allow_ips: str | list[str]
    ws_max_size: int
    ws_ping_interval: float | None
    ws_ping_timeout: float | None
    ws_per_message_deflate: bool
    backlog: int
    limit_concurrency: int | None
    sync_threads: int | None
    sync_threads_busy: int | None


@dataclass(frozen=True)
class AdapterSettings:
    """One entry of GATEWAY["ADAPTERS"]."""

    name: str
    backend: str
    enabled: bool
    options: Mapping[str, Any]


def merge(user: Mapping[str, Any]) -> dict[str, Any]:
    """GATEWAY merged over the defaults: HTTP key by key, each adapter over its defaults."""
    merged = copy.deepcopy(DEFAULTS)
    merged.update({key: value for key, value in user.items() if key not in ("HTTP", "ADAPTERS")})
    if isinstance(user.get("HTTP"), Mapping):
        merged["HTTP"].update(user["HTTP"])
    if isinstance(user.get("ADAPTERS"), Mapping):
        merged["ADAPTERS"] = {
            name: {**ADAPTER_DEFAULTS, **entry} if isinstance(entry, Mapping) else entry
            for name, entry in user["ADAPTERS"].items()
        }
    return merged


class GatewaySettings:
    """The GATEWAY setting merged over the defaults, read on first access."""

    def __init__(self, gateway: Mapping[str, Any] | None = None) -> None:
        """Use `gateway` instead of Django's settings.GATEWAY when given (handy in tests)."""
        self._explicit = gateway
        self._merged: dict[str, Any] | None = None

    def reload(self) -> None:
        """Forget what was read; the next access reads the setting again."""
        self._merged = None

    @property
    def user(self) -> Any:
        """The setting as written by the user (and per-process overrides), before merging."""
        if self._explicit is not None:
            return self._explicit
        from django.conf import settings

        # Per process: GATEWAY_ADAPTERS__<ADAPTER>__<OPTION> (or `gateway run --set`).
        return apply_overrides(getattr(settings, "GATEWAY", {}))

    @property
    def raw(self) -> dict[str, Any]:
        """The merged dict, uppercase keys as in the setting."""
        if self._merged is None:
            user = self.user
            self._merged = merge(user if isinstance(user, Mapping) else {})
        return self._merged

    def problems(self) -> list[Problem]:
        """Every problem with the setting; empty when it is usable."""
        from gateway.conf_checks import validate

        return validate(self.user)

    @property
    def http(self) -> HTTPSettings:
        """GATEWAY["HTTP"]."""
        http = self.raw["HTTP"]
        return HTTPSettings(**{key.lower(): http[key] for key in HTTP_DEFAULTS})

    @property
    def health_path(self) -> str | None:
        """GATEWAY["HEALTH_PATH"]; None disables the health endpoint."""
        return cast("str | None", self.raw["HEALTH_PATH"])

    @property
    def metrics_path(self) -> str | None:
        """GATEWAY["METRICS_PATH"]; None disables the metrics endpoint."""
        return cast("str | None", self.raw["METRICS_PATH"])

    @property
    def shutdown_timeout(self) -> float:
        """GATEWAY["SHUTDOWN_TIMEOUT"] in seconds."""
        return float(self.raw["SHUTDOWN_TIMEOUT"])

    @property
    def loop(self) -> LoopName:
        """GATEWAY["LOOP"]."""
        return cast(LoopName, self.raw["LOOP"])

    @property
    def switch_interval(self) -> float | None:
        """GATEWAY["SWITCH_INTERVAL"] in seconds; None leaves Python's own."""
        value = self.raw["SWITCH_INTERVAL"]
        return None if value is None else float(value)

    @property
    def loop_share(self) -> float:
        """GATEWAY["LOOP_SHARE"]: the most of the loop one adapter's heavy steps take."""
        return float(self.raw["LOOP_SHARE"])

    @property
    def adapters(self) -> list[AdapterSettings]:
        """GATEWAY["ADAPTERS"] in the order written, disabled ones included."""
        return [
            AdapterSettings(name, entry["BACKEND"], entry["ENABLED"], entry["OPTIONS"])
            for name, entry in self.raw["ADAPTERS"].items()
        ]

    def dead_letter_handler(self) -> DeadLetterHook:
        """GATEWAY["DEAD_LETTER_HANDLER"], imported when it is a dotted path."""
        handler = self.raw["DEAD_LETTER_HANDLER"]
        return cast(
            "DeadLetterHook", import_string(handler) if isinstance(handler, str) else handler
        )


gateway_settings = GatewaySettings()


def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting == "GATEWAY":
        gateway_settings.reload()


setting_changed.connect(_on_setting_changed, dispatch_uid="gateway.conf")
