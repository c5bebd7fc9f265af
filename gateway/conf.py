"""The GATEWAY setting: defaults, typed access, and validation that reports every mistake.

``gateway_settings`` reads ``settings.GATEWAY`` on first access (never at import), merges it
over ``DEFAULTS`` and re-reads it when a test overrides the setting. ``validate()`` returns
every problem at once; the system check in ``django_app.checks`` turns them into errors.
"""

from __future__ import annotations

import copy
import difflib
import importlib.util
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, cast

from django.core.signals import setting_changed
from django.utils.module_loading import import_string

from gateway.metrics_access import metrics_access_problems
from gateway.overrides import apply_overrides

if TYPE_CHECKING:
    from gateway.pipeline import DeadLetterHook

__all__ = [
    "DEFAULTS",
    "AdapterSettings",
    "GatewaySettings",
    "HTTPSettings",
    "Problem",
    "gateway_settings",
    "validate",
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
    "BACKLOG": 2048,
    "LIMIT_CONCURRENCY": None,
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
    backlog: int
    limit_concurrency: int | None


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


# --- validation ---------------------------------------------------------------------------

Rule = tuple[Callable[[Any], bool], str]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_path(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("/")


def _is_ip_list(value: Any) -> bool:
    return isinstance(value, str) or (
        isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)
    )


_BOOL: Final[Rule] = (lambda v: isinstance(v, bool), "True or False")
_POSITIVE_INT: Final[Rule] = (lambda v: _is_int(v) and v > 0, "a positive integer")
_SECONDS_OR_NONE: Final[Rule] = (
    lambda v: v is None or (_is_number(v) and v > 0),
    "a positive number of seconds or None",
)
_PATH_OR_NONE: Final[Rule] = (
    lambda v: v is None or _is_path(v),
    'a path starting with "/" or None',
)

HTTP_RULES: Final[dict[str, Rule]] = {
    "ENABLED": _BOOL,
    "HOST": (lambda v: isinstance(v, str) and v != "", "a host name or IP address"),
    "PORT": (lambda v: _is_int(v) and 0 <= v <= 65535, "an integer 0-65535"),
    "ROOT_PATH": (lambda v: v == "" or _is_path(v), '"" or a path starting with "/"'),
    "PROXY_HEADERS": _BOOL,
    "FORWARDED_ALLOW_IPS": (_is_ip_list, "a comma-separated string or a list of addresses"),
    "WS_MAX_SIZE": _POSITIVE_INT,
    "WS_PING_INTERVAL": _SECONDS_OR_NONE,
    "WS_PING_TIMEOUT": _SECONDS_OR_NONE,
    "BACKLOG": _POSITIVE_INT,
    "LIMIT_CONCURRENCY": (
        lambda v: v is None or (_is_int(v) and v > 0),
        "a positive integer or None",
    ),
}
_CHECKED_APART: Final[Rule] = (lambda v: True, "")
TOP_RULES: Final[dict[str, Rule]] = {
    "HTTP": _CHECKED_APART,
    "HEALTH_PATH": _PATH_OR_NONE,
    "METRICS_PATH": _PATH_OR_NONE,
    "METRICS_ACCESS": _CHECKED_APART,  # by metrics_access_problems: no secret in messages
    "SHUTDOWN_TIMEOUT": (lambda v: _is_number(v) and v >= 0, "a number of seconds >= 0"),
    "DEAD_LETTER_HANDLER": (
        lambda v: callable(v) or (isinstance(v, str) and "." in v),
        "a dotted path to a callable, or a callable",
    ),
    "LOOP": (lambda v: v in ("auto", "asyncio", "uvloop"), 'one of "auto", "asyncio", "uvloop"'),
    "DEVICE_STATE_MAX_BYTES": _POSITIVE_INT,
    "LOG_FORMAT": (lambda v: v in ("text", "json"), 'one of "text", "json"'),
    "ADAPTERS": _CHECKED_APART,
}
ADAPTER_RULES: Final[dict[str, Rule]] = {
    "BACKEND": (lambda v: isinstance(v, str) and "." in v, "a dotted path to a ProtocolAdapter"),
    "ENABLED": _BOOL,
    "OPTIONS": (lambda v: isinstance(v, Mapping), "a dict"),
}


def setting_name(*keys: str) -> str:
    """'GATEWAY["HTTP"]["PORT"]' for ("HTTP", "PORT")."""
    return "GATEWAY" + "".join(f'["{key}"]' for key in keys)


class _Validator:
    """Collects every problem instead of stopping at the first."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, code: str, keys: tuple[str, ...], text: str, hint: str | None = None) -> None:
        name = setting_name(*keys)
        # Adapters name their keys as OPTIONS["KEY"]: said once, after the adapter's own path.
        if keys[-1:] == ("OPTIONS",) and text.startswith('OPTIONS["'):
            message = name + text.removeprefix("OPTIONS")
        else:
            message = f"{name} {text}"
        self.problems.append(Problem(f"gateway.{code}", name, message, hint))

    def keys_and_rules(self, keys: tuple[str, ...], value: Any, rules: Mapping[str, Rule]) -> bool:
        """Check a dict's keys and each value's rule; False when `value` is no dict at all."""
        if not isinstance(value, Mapping):
            self.add("E002", keys, f"must be a dict, got {value!r}")
            return False
        for key, item in value.items():
            if key not in rules:
                self.unknown(keys, key, rules)
            elif not rules[key][0](item):
                self.add("E002", (*keys, key), f"must be {rules[key][1]}, got {item!r}")
        return True

    def unknown(self, keys: tuple[str, ...], key: Any, known: Mapping[str, Any]) -> None:
        guess = difflib.get_close_matches(str(key).upper(), list(known), n=1)
        hint = f'Did you mean "{guess[0]}"? ' if guess else ""
        hint += "Known keys: " + ", ".join(known) + "."
        self.add("E001", (*keys, str(key)), "is not a known key", hint)


def validate(gateway: Any) -> list[Problem]:
    """Every problem with a GATEWAY setting as written (before merging), in setting order."""
    checker = _Validator()
    if not checker.keys_and_rules((), gateway, TOP_RULES):
        return checker.problems
    if "HTTP" in gateway:
        checker.keys_and_rules(("HTTP",), gateway["HTTP"], HTTP_RULES)
    merged = merge(gateway)
    _check_paths(checker, merged)
    _check_loop(checker, merged["LOOP"])
    for *keys, problem in metrics_access_problems(merged["METRICS_ACCESS"]):
        checker.add("E002", ("METRICS_ACCESS", *keys), problem)
    _check_dead_letter_handler(checker, merged["DEAD_LETTER_HANDLER"])
    if "ADAPTERS" in gateway:
        _check_adapters(checker, gateway["ADAPTERS"])
    return checker.problems


def _check_paths(checker: _Validator, merged: Mapping[str, Any]) -> None:
    health, metrics = merged["HEALTH_PATH"], merged["METRICS_PATH"]
    if health is not None and health == metrics:
        checker.add(
            "E002", ("METRICS_PATH",), f'must differ from GATEWAY["HEALTH_PATH"] ({health!r})'
        )


def _check_loop(checker: _Validator, loop: Any) -> None:
    if loop == "uvloop" and importlib.util.find_spec("uvloop") is None:
        checker.add("E003", ("LOOP",), 'is "uvloop" but uvloop is not installed')


def _check_dead_letter_handler(checker: _Validator, handler: Any) -> None:
    if not isinstance(handler, str) or "." not in handler:
        return
    try:
        imported = import_string(handler)
    except ImportError as exc:
        checker.add("E003", ("DEAD_LETTER_HANDLER",), f"{handler!r} cannot be imported: {exc}")
        return
    if not callable(imported):
        checker.add("E004", ("DEAD_LETTER_HANDLER",), f"{handler!r} is not callable")


def _check_adapters(checker: _Validator, adapters: Any) -> None:
    if not isinstance(adapters, Mapping):
        checker.add("E002", ("ADAPTERS",), f"must be a dict of name -> adapter, got {adapters!r}")
        return
    for name, entry in adapters.items():
        if not isinstance(name, str) or not name:
            checker.add("E002", ("ADAPTERS",), f"has a key that is not a name: {name!r}")
            continue
        keys = ("ADAPTERS", name)
        if not checker.keys_and_rules(keys, entry, ADAPTER_RULES):
            continue
        if "BACKEND" not in entry:
            checker.add("E002", keys, 'has no "BACKEND" (a dotted path to a ProtocolAdapter)')
        elif entry.get("ENABLED", True) is not False and ADAPTER_RULES["BACKEND"][0](
            entry["BACKEND"]
        ):
            _check_backend(checker, keys, entry["BACKEND"], entry.get("OPTIONS", {}))


def _check_backend(checker: _Validator, keys: tuple[str, ...], backend: str, options: Any) -> None:
    from gateway.adapters import ProtocolAdapter

    try:
        adapter_class = import_string(backend)
    except ImportError as exc:
        checker.add("E003", (*keys, "BACKEND"), f"{backend!r} cannot be imported: {exc}")
        return
    if not (isinstance(adapter_class, type) and issubclass(adapter_class, ProtocolAdapter)):
        checker.add("E004", (*keys, "BACKEND"), f"{backend!r} is not a ProtocolAdapter subclass")
        return
    if not isinstance(options, Mapping):
        return
    try:
        errors = adapter_class.check_options(options)
    except Exception as exc:
        errors = [f"could not be checked: {backend}.check_options raised {exc!r}"]
    for error in errors:
        checker.add("E005", (*keys, "OPTIONS"), error)
