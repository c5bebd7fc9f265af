"""Validation of the GATEWAY setting: every problem at once, each with its setting's name.

``validate()`` checks the setting as written (before merging over `gateway.conf.DEFAULTS`):
unknown keys (with the closest known one), values of the wrong kind, backends that cannot be
imported, and each adapter's own OPTIONS through its ``check_options``.
"""

from __future__ import annotations

import difflib
import importlib.util
from collections.abc import Callable, Mapping
from typing import Any, Final

from django.utils.module_loading import import_string

from gateway.conf import Problem, merge
from gateway.metrics_access import metrics_access_problems

__all__ = ["HTTP_RULES", "Rule", "setting_name", "validate"]

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
    "WS_PER_MESSAGE_DEFLATE": _BOOL,
    "BACKLOG": _POSITIVE_INT,
    "LIMIT_CONCURRENCY": (
        lambda v: v is None or (_is_int(v) and v > 0),
        "a positive integer or None",
    ),
    "SYNC_THREADS": (
        lambda v: v is None or (_is_int(v) and v > 0),
        "a positive integer or None",
    ),
    "SYNC_THREADS_BUSY": (
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
    "SWITCH_INTERVAL": (
        lambda v: v is None or (_is_number(v) and 0 < v <= 1),
        "a number of seconds above 0 and at most 1, or None",
    ),
    "LOOP_SHARE": (
        lambda v: _is_number(v) and 0 < v <= 1,
        "a number above 0 and at most 1 (1: heavy steps back to back)",
    ),
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
