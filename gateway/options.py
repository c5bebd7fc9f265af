"""Adapter OPTIONS, declared once: each key with its default, its check and its parser.

An adapter lists its keys as `Option` values in an `OptionSet`; its ``check_options`` is
``OPTIONS.check(options)`` (every problem, one sentence each, the key named once as
``OPTIONS["KEY"]``), and it reads values with ``OPTIONS.parse(options)``. Shared option types
give every adapter the same keys for the same thing:

* `retry_option`: ``RETRY`` = ``{"ATTEMPTS", "INITIAL_BACKOFF", "MAX_BACKOFF"}`` -> RetryPolicy
* `reconnect_option`: ``RECONNECT`` = ``{"INITIAL", "MAX"}`` -> `ReconnectPolicy`
* `tls_option`: ``TLS`` = ``None`` or a dict of file paths (and flags) -> dict
* `logins_option`: ``LOGINS`` = ``{"CONCURRENCY", "MAX_WAITING", "MAX_PER_ADDRESS",
  "MAX_FAILURES", "FAILURE_WINDOW"}`` -> `LoginLimits`

A key renamed in a release keeps working for one more: `Option.renamed_from` lists the old
names, accepted with a `DeprecationWarning` naming the new one.
"""

from __future__ import annotations

import os
import random
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from gateway.logins import LoginLimits
from gateway.passwords import HASH_THREADS
from gateway.pipeline import RetryPolicy

__all__ = [
    "Backoff",
    "Check",
    "Option",
    "OptionSet",
    "ReconnectPolicy",
    "busy_delay",
    "flag",
    "is_int",
    "is_number",
    "logins_option",
    "one_of",
    "optional_http_url",
    "optional_text",
    "positive_int",
    "positive_number",
    "reconnect_option",
    "retry_option",
    "tls_option",
    "url_path",
]

Check = Callable[[Any], str | None]
"""A value's check: None when it is fine, else what it must be ("a positive integer")."""


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def positive_int(value: object) -> str | None:
    return None if is_int(value) and value > 0 else "a positive integer"  # type: ignore[operator]


def positive_number(value: object) -> str | None:
    return None if is_number(value) and value > 0 else "a positive number"  # type: ignore[operator]


def busy_delay(value: object) -> str | None:
    """The check of a ``BUSY_DELAY`` (`gateway.busy`): 0 to 60 seconds."""
    ok = is_number(value) and 0 <= value <= 60  # type: ignore[operator]
    return None if ok else "a number of seconds from 0 to 60"


def flag(value: object) -> str | None:
    return None if isinstance(value, bool) else "True or False"


def optional_text(value: object) -> str | None:
    return None if value is None or isinstance(value, str) else "a str or None"


def url_path(value: object) -> str | None:
    return None if isinstance(value, str) and value.startswith("/") else "a path starting with '/'"


def optional_http_url(value: object) -> str | None:
    ok = value is None or urlsplit(str(value)).scheme in ("http", "https")
    return None if ok else "an http(s) URL"


def one_of(*choices: object) -> Check:
    words = ", ".join(repr(choice) for choice in choices)
    return lambda value: None if value in choices else f"one of {words}"


@dataclass(frozen=True)
class Option:
    """One OPTIONS key."""

    key: str
    default: Any = None
    check: Check | None = None
    """Checks a value that is set; checks of nested dicts return ``["SUB"] must be ...``."""
    parse: Callable[[Any], Any] | None = None
    """Turns the value (the default included) into what the adapter uses."""
    renamed_from: tuple[str, ...] = ()
    """Old names of this key, accepted for one release with a DeprecationWarning."""
    legacy: tuple[tuple[str, Callable[[Any], Any]], ...] = ()
    """Old keys whose value becomes part of this one: (old key, old value -> new value). For a
    dict option the new values are merged (``SEND_ATTEMPTS: 5`` -> ``{"ATTEMPTS": 5}``)."""
    checks: Callable[[Any], list[str]] | None = None
    """For dict values: every problem, each ``["SUB"] must be ...`` or ``must be ...``."""
    required: str | None = None
    """When the key must be set (and not empty): why, for the message saying it is missing."""

    def problems(self, value: Any) -> list[str]:
        name = f'OPTIONS["{self.key}"]'
        if self.checks is not None:
            return [
                f"{name}{p}" if p.startswith("[") else f"{name} {p}" for p in self.checks(value)
            ]
        what = self.check(value) if self.check is not None else None
        return [] if what is None else [f"{name} must be {what}, got {value!r}"]


@dataclass
class OptionSet:
    """An adapter's OPTIONS keys; `check` reports, `parse` reads."""

    options: list[Option] = field(default_factory=list)

    def __init__(self, *options: Option | OptionSet) -> None:
        self.options = []
        for item in options:
            self.options.extend(item.options if isinstance(item, OptionSet) else [item])
        self._by_key = {option.key: option for option in self.options}
        self._old = {old: option for option in self.options for old in option.renamed_from}
        self._old.update({old: option for option in self.options for old, _ in option.legacy})

    @property
    def keys(self) -> frozenset[str]:
        return frozenset(self._by_key)

    def defaults(self) -> dict[str, Any]:
        return {option.key: option.default for option in self.options}

    def check(self, options: Mapping[str, Any]) -> list[str]:
        """Every problem with `options`, one sentence each, naming the key once."""
        errors: list[str] = []
        for key, value in options.items():
            option = self._by_key.get(key) or self._old.get(key)
            if option is None:
                errors.append(f'OPTIONS["{key}"] is not a known key')
            elif key in self._old and option.key in options:
                errors.append(f'OPTIONS["{key}"] is the old name of OPTIONS["{option.key}"]: '
                              "set one of them")  # fmt: skip
            elif key not in self._old:
                errors.extend(option.problems(value))
        for option in self.options:
            if option.key not in options and any(old in options for old, _ in option.legacy):
                errors.extend(option.problems(_upgraded(option, options)))
            elif option.required is not None and not options.get(option.key):
                errors.append(f'OPTIONS["{option.key}"] is required {option.required}')
        return errors

    def parse(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """The value of every key: set, or renamed (with a warning), or the default; parsed."""
        values: dict[str, Any] = {}
        for option in self.options:
            value = self._value(option, options)
            values[option.key] = option.parse(value) if option.parse is not None else value
        return values

    @staticmethod
    def _value(option: Option, options: Mapping[str, Any]) -> Any:
        if option.key in options:
            return options[option.key]
        old = [key for key in option.renamed_from if key in options]
        old += [key for key, _ in option.legacy if key in options]
        for key in old:
            warnings.warn(
                f'OPTIONS["{key}"] is deprecated: use OPTIONS["{option.key}"] (the old key '
                "goes in the next release)",
                DeprecationWarning,
                stacklevel=4,
            )
        if any(key in options for key in option.renamed_from):
            return options[next(k for k in option.renamed_from if k in options)]
        return _upgraded(option, options) if old else option.default


def _upgraded(option: Option, options: Mapping[str, Any]) -> Any:
    """The new value that an option's legacy keys in `options` make up."""
    values = [upgrade(options[key]) for key, upgrade in option.legacy if key in options]
    if values and all(isinstance(value, Mapping) for value in values):
        merged: dict[str, Any] = {}
        for value in values:
            merged.update(value)
        return merged
    return values[-1]


# --- shared option types -----------------------------------------------------------------------


def _dict_problems(
    value: object, keys: Iterable[str], rules: Mapping[str, tuple[Check, bool]]
) -> list[str]:
    allowed = list(keys)
    if value is None and not any(required for _, required in rules.values()):
        return []
    if not isinstance(value, Mapping):
        return [f"must be a dict with {', '.join(allowed)}, got {value!r}"]
    errors = [f'["{key}"] is not a known key' for key in value if key not in allowed]
    for key, (check, required) in rules.items():
        if key not in value:
            if required:
                errors.append(f'["{key}"] is missing')
            continue
        what = check(value[key])
        if what is not None:
            errors.append(f'["{key}"] must be {what}, got {value[key]!r}')
    return errors


def _seconds(value: object) -> str | None:
    return None if is_number(value) and value >= 0 else "a number of seconds >= 0"  # type: ignore[operator]


def _attempts(value: object) -> str | None:
    return None if is_int(value) and value >= 1 else "an integer >= 1"  # type: ignore[operator]


_RETRY_RULES: dict[str, tuple[Check, bool]] = {
    "ATTEMPTS": (_attempts, False),
    "INITIAL_BACKOFF": (_seconds, False),
    "MAX_BACKOFF": (_seconds, False),
}


def retry_option(
    key: str = "RETRY", *, attempts: int = 3, initial: float = 0.5, maximum: float = 30.0
) -> Option:
    """``{"ATTEMPTS", "INITIAL_BACKOFF", "MAX_BACKOFF"}`` -> `RetryPolicy`; keys may be left out."""
    default = {"ATTEMPTS": attempts, "INITIAL_BACKOFF": initial, "MAX_BACKOFF": maximum}

    def parse(value: Mapping[str, Any]) -> RetryPolicy:
        merged = {**default, **value}
        return RetryPolicy(
            int(merged["ATTEMPTS"]),
            float(merged["INITIAL_BACKOFF"]),
            float(merged["MAX_BACKOFF"]),
        )

    def checks(value: object) -> list[str]:
        return _dict_problems(value if value is not None else {}, _RETRY_RULES, _RETRY_RULES)

    return Option(key, default, parse=parse, checks=checks)


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
        # Jitter keeps a fleet of gateways from reconnecting in lock step after an outage.
        return float(base * random.uniform(0.5, 1.0))

    def reset(self) -> None:
        self.attempt = 0


@dataclass(frozen=True)
class ReconnectPolicy:
    """The ``RECONNECT`` option, parsed: a fresh `Backoff` per connection loop."""

    initial: float
    maximum: float

    def backoff(self) -> Backoff:
        return Backoff(self.initial, self.maximum)


def _positive_seconds(value: object) -> str | None:
    return None if is_number(value) and value > 0 else "a positive number of seconds"  # type: ignore[operator]


_RECONNECT_RULES: dict[str, tuple[Check, bool]] = {
    "INITIAL": (_positive_seconds, False),
    "MAX": (_positive_seconds, False),
}


def reconnect_option(initial: float = 0.5, maximum: float = 30.0) -> Option:
    """``RECONNECT`` = ``{"INITIAL", "MAX"}`` -> `ReconnectPolicy`; keys may be left out."""
    default = {"INITIAL": initial, "MAX": maximum}

    def parse(value: Mapping[str, Any]) -> ReconnectPolicy:
        merged = {**default, **value}
        return ReconnectPolicy(float(merged["INITIAL"]), float(merged["MAX"]))

    def checks(value: object) -> list[str]:
        return _dict_problems(
            value if value is not None else {}, _RECONNECT_RULES, _RECONNECT_RULES
        )

    return Option("RECONNECT", default, parse=parse, checks=checks)


def _path(value: object) -> str | None:
    ok = isinstance(value, str) and os.path.isfile(value)
    return None if ok else "the path of a readable PEM file"


def _port(value: object) -> str | None:
    return None if is_int(value) and 0 <= value <= 65535 else "an integer 0-65535"  # type: ignore[operator]


TLS_RULES: dict[str, tuple[Check, bool]] = {
    "CA_FILE": (_path, False),
    "CERT_FILE": (_path, False),
    "KEY_FILE": (_path, False),
    "INSECURE": (flag, False),
    "PORT": (_port, False),
}


def tls_option(*keys: str, required: Iterable[str] = ()) -> Option:
    """``TLS`` = ``None`` (off) or a dict of `keys` from `TLS_RULES`; `required` must be set."""
    needed = set(required)
    rules = {key: (TLS_RULES[key][0], key in needed) for key in keys}

    def checks(value: object) -> list[str]:
        if value is None:
            return []
        errors = _dict_problems(value, keys, rules)
        if isinstance(value, Mapping) and value.get("KEY_FILE") and not value.get("CERT_FILE"):
            errors.append('["KEY_FILE"] needs ["CERT_FILE"]')
        return errors

    return Option("TLS", None, checks=checks)


def _concurrency(value: object) -> str | None:
    ok = is_int(value) and 1 <= value <= HASH_THREADS  # type: ignore[operator]
    return None if ok else f"an integer 1-{HASH_THREADS} (the hashing threads)"


_LOGINS_RULES: dict[str, tuple[Check, bool]] = {
    "CONCURRENCY": (_concurrency, False),
    "MAX_WAITING": (positive_int, False),
    "MAX_PER_ADDRESS": (positive_int, False),
    "MAX_FAILURES": (positive_int, False),
    "FAILURE_WINDOW": (_positive_seconds, False),
    "BUSY_DELAY": (busy_delay, False),
}


def logins_option() -> Option:
    """``LOGINS`` = password checks' limits (`gateway.logins`) -> `LoginLimits`; keys optional."""
    base = LoginLimits()
    default = {
        "CONCURRENCY": base.concurrency,
        "MAX_WAITING": base.max_waiting,
        "MAX_PER_ADDRESS": base.max_per_address,
        "MAX_FAILURES": base.max_failures,
        "FAILURE_WINDOW": base.failure_window,
        "BUSY_DELAY": base.busy_delay,
    }

    def parse(value: Mapping[str, Any] | None) -> LoginLimits:
        merged = {**default, **(value or {})}
        return LoginLimits(
            int(merged["CONCURRENCY"]),
            int(merged["MAX_WAITING"]),
            int(merged["MAX_PER_ADDRESS"]),
            int(merged["MAX_FAILURES"]),
            float(merged["FAILURE_WINDOW"]),
            float(merged["BUSY_DELAY"]),
        )

    def checks(value: object) -> list[str]:
        return _dict_problems(value if value is not None else {}, _LOGINS_RULES, _LOGINS_RULES)

    return Option("LOGINS", default, parse=parse, checks=checks)
