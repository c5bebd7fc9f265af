"""The ``COMMANDS`` and ``PRESENCE`` options of an MQTT adapter, and the topic patterns they use.

A pattern is a topic whose whole levels may be placeholders (``devices/{device_id}/status``);
`TopicPattern` fills it in, turns it into a subscription filter and reads a topic back.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from gateway.options import Option, is_number

__all__ = [
    "COMMANDS_OPTION",
    "PRESENCE_OPTION",
    "CommandsOptions",
    "PresenceOptions",
    "TopicPattern",
]

_PLACEHOLDER: Final = re.compile(r"^\{(\w+)\}$")


@dataclass(frozen=True)
class TopicPattern:
    """A topic with placeholder levels, e.g. ``devices/{device_id}/responses/{request_id}``."""

    pattern: str

    @property
    def levels(self) -> list[str]:
        return self.pattern.split("/")

    def names(self) -> list[str]:
        return [m.group(1) for level in self.levels if (m := _PLACEHOLDER.match(level))]

    def fill(self, **values: str) -> str:
        """The topic with each placeholder replaced by its value."""
        return self.pattern.format_map(values)

    def filter(self) -> str:
        """The subscription filter matching every topic of the pattern (``+`` per placeholder)."""
        return "/".join("+" if _PLACEHOLDER.match(level) else level for level in self.levels)

    def match(self, topic: str) -> dict[str, str] | None:
        """The placeholders' values when `topic` is one of the pattern's, else None."""
        levels = topic.split("/")
        if len(levels) != len(self.levels):
            return None
        return self._read(levels, self.levels)

    def match_prefix(self, topic: str, name: str) -> str | None:
        """The value of `name` when `topic` starts with the pattern's levels up to it."""
        levels = topic.split("/")
        index = self.levels.index(f"{{{name}}}")
        if len(levels) <= index:
            return None
        found = self._read(levels[: index + 1], self.levels[: index + 1])
        return None if found is None else found[name]

    @staticmethod
    def _read(levels: list[str], pattern: list[str]) -> dict[str, str] | None:
        values: dict[str, str] = {}
        for level, expected in zip(levels, pattern, strict=True):
            placeholder = _PLACEHOLDER.match(expected)
            if placeholder is None:
                if level != expected:
                    return None
            elif not level:
                return None
            else:
                values[placeholder.group(1)] = level
        return values


def _pattern_check(value: object, needs: tuple[str, ...]) -> str | None:
    if not isinstance(value, str) or not value or "+" in value or "#" in value:
        return "a topic pattern without wildcards"
    pattern = TopicPattern(value)
    if any(
        ("{" in level or "}" in level) and not _PLACEHOLDER.match(level) for level in pattern.levels
    ):
        return "a topic pattern whose placeholders are whole levels"
    names = pattern.names()
    missing = [name for name in needs if name not in names]
    if missing or len(names) != len(set(names)):
        wanted = ", ".join("{" + name + "}" for name in needs)
        return f"a topic pattern with {wanted} as whole levels, each once"
    if "{command}" in pattern.levels and pattern.levels[-1] != "{command}":
        return "a topic pattern whose {command} is the last level"
    return None


def _nested(value: object, keys: Mapping[str, Any]) -> list[str]:
    if value is None or isinstance(value, bool):
        return []
    if not isinstance(value, Mapping):
        return [f"must be None, True or a dict with {', '.join(keys)}, got {value!r}"]
    errors = [f'["{key}"] is not a known key' for key in value if key not in keys]
    for key, check in keys.items():
        if key in value and (problem := check(value[key])) is not None:
            errors.append(f'["{key}"] must be {problem}, got {value[key]!r}')
    return errors


def _store(value: object) -> str | None:
    return None if value is None or isinstance(value, str) else "None or a dotted path"


def _timeout(value: object) -> str | None:
    ok = value is None or (is_number(value) and value > 0)  # type: ignore[operator]
    return None if ok else "None or a positive number of seconds"


def _text(value: object) -> str | None:
    return None if isinstance(value, str) else "a str"


_COMMAND_KEYS: Final = {
    "TOPIC": lambda v: _pattern_check(v, ("device_id", "command")),
    "RESPONSE_TOPIC": lambda v: _pattern_check(v, ("device_id", "request_id")),
    "STORE": _store,
}
_PRESENCE_KEYS: Final = {
    "TOPIC": lambda v: _pattern_check(v, ("device_id",)),
    "ONLINE": _text,
    "OFFLINE": _text,
    "TIMEOUT": _timeout,
    "STORE": _store,
}


@dataclass(frozen=True)
class CommandsOptions:
    """``COMMANDS``: where commands go, where their answers come, and the history's store."""

    topic: TopicPattern = TopicPattern("devices/{device_id}/commands/{command}")
    response_topic: TopicPattern = TopicPattern("devices/{device_id}/responses/{request_id}")
    store: str | None = None

    @classmethod
    def parse(cls, value: Any) -> CommandsOptions | None:
        if value is None or value is False:
            return None
        given: Mapping[str, Any] = {} if value is True else value
        default = cls()
        return cls(
            topic=TopicPattern(given.get("TOPIC", default.topic.pattern)),
            response_topic=TopicPattern(
                given.get("RESPONSE_TOPIC", default.response_topic.pattern)
            ),
            store=given.get("STORE"),
        )


@dataclass(frozen=True)
class PresenceOptions:
    """``PRESENCE``: the status topic, its payloads, the last-seen timeout, the device store."""

    topic: TopicPattern = TopicPattern("devices/{device_id}/status")
    online: bytes = b"online"
    offline: bytes = b"offline"
    timeout: float | None = None
    store: str | None = None

    @classmethod
    def parse(cls, value: Any) -> PresenceOptions | None:
        if value is None or value is False:
            return None
        given: Mapping[str, Any] = {} if value is True else value
        timeout = given.get("TIMEOUT")
        return cls(
            topic=TopicPattern(given.get("TOPIC", "devices/{device_id}/status")),
            online=str(given.get("ONLINE", "online")).encode(),
            offline=str(given.get("OFFLINE", "offline")).encode(),
            timeout=None if timeout is None else float(timeout),
            store=given.get("STORE"),
        )


COMMANDS_OPTION: Final = Option(
    "COMMANDS",
    None,
    checks=lambda value: _nested(value, _COMMAND_KEYS),
    parse=CommandsOptions.parse,
)
"""``None`` (off), ``True`` (the defaults) or a dict of TOPIC, RESPONSE_TOPIC, STORE."""
PRESENCE_OPTION: Final = Option(
    "PRESENCE",
    None,
    checks=lambda value: _nested(value, _PRESENCE_KEYS),
    parse=PresenceOptions.parse,
)
"""``None`` (off), ``True`` (the defaults) or a dict of TOPIC, ONLINE, OFFLINE, TIMEOUT, STORE."""
