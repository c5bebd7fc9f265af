"""Checking and copying layer messages: only what every backend can carry between processes.

A message may hold None, bool, int (64-bit), float, str, bytes, list, tuple and dict with str
keys, nested. That is what msgpack carries, so a message the in-memory layer accepts is one the
Redis layer accepts too, and it arrives in the same shape: tuples become lists, bytearrays
become bytes, subclasses (enums, safe strings) become their base type.

`copy_message` checks and copies in one pass; `copier` then makes more copies of the checked
message cheaply, one per receiver of a group send.
"""

from __future__ import annotations

import marshal
from collections.abc import Callable
from functools import partial
from typing import Any

from gateway.exceptions import MessageTypeError, UnserializableMessage

__all__ = ["MAX_DEPTH", "copier", "copy_message"]

MAX_DEPTH = 64
"""How deep containers may nest inside a message (also catches a message that contains itself)."""

_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1
_IMMUTABLE: frozenset[type] = frozenset({str, bytes, float, bool, type(None)})
_ALLOWED = "None, bool, int, float, str, bytes, list, tuple and dict with str keys"


class _Rejected(Exception):
    """A bad value, with the keys leading to it gathered innermost first on the way out."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path: list[object] = []

    def public(self) -> UnserializableMessage:
        where = "".join(f"[{key!r}]" for key in reversed(self.path))
        return UnserializableMessage(
            f"message{where}: {self.reason} (a channel layer message may hold only {_ALLOWED})"
        )


def copy_message(message: object) -> tuple[dict[str, Any], bool]:
    """Check that `message` can cross processes and copy it; also say if it nests containers."""
    if not isinstance(message, dict):
        raise MessageTypeError(f"a channel layer message must be a dict, not {_name(message)}")
    kind = message.get("type")
    if not isinstance(kind, str):
        raise MessageTypeError(f'a channel layer message needs a str "type", got {kind!r}')
    # A C-level copy, then only the values that are not plain scalars are replaced.
    copied: dict[str, Any] = dict(message)
    nested = False
    for key, value in message.items():
        if type(key) is not str:
            raise _Rejected(_bad_key(key)).public()
        kind_of_value = type(value)
        if kind_of_value in _IMMUTABLE:
            continue
        try:
            if kind_of_value is int:
                _check_int(value)
                continue
            nested = True
            copied[key] = _copy(value, 1)
        except _Rejected as rejected:
            rejected.path.append(key)
            raise rejected.public() from None
    return copied, nested


def copier(message: dict[str, Any], nested: bool) -> Callable[[], dict[str, Any]]:
    """Return a function making fresh copies of a message that `copy_message` produced."""
    if not nested:
        return message.copy
    # Once checked, a message holds only types marshal carries exactly, and loading a marshal
    # blob is about twice as fast as copying the containers in Python.
    return partial(marshal.loads, marshal.dumps(message))


def _copy(value: Any, depth: int) -> Any:
    kind = type(value)
    if kind in _IMMUTABLE:
        return value
    if kind is int:
        return _check_int(value)
    if depth >= MAX_DEPTH:
        raise _Rejected(f"containers nest deeper than {MAX_DEPTH} levels")
    if kind is dict:
        return _copy_dict(value, depth + 1)
    if kind is list or kind is tuple:
        return _copy_list(value, depth + 1)
    return _copy_subclass(value, depth)


def _copy_dict(value: dict[Any, Any], depth: int) -> dict[str, Any]:
    copied: dict[str, Any] = {}
    for key, item in value.items():
        if type(key) is not str:
            raise _Rejected(_bad_key(key))
        try:
            copied[key] = _copy(item, depth)
        except _Rejected as rejected:
            rejected.path.append(key)
            raise
    return copied


def _copy_list(value: list[Any] | tuple[Any, ...], depth: int) -> list[Any]:
    copied: list[Any] = []
    append = copied.append
    for index, item in enumerate(value):
        try:
            append(_copy(item, depth))
        except _Rejected as rejected:
            rejected.path.append(index)
            raise
    return copied


def _copy_subclass(value: object, depth: int) -> Any:
    """Subclasses and byte buffers travel as their base type, as they would through msgpack."""
    if isinstance(value, bool):  # pragma: no cover - bool cannot be subclassed
        return bool(value)
    if isinstance(value, int):
        return _check_int(int(value))
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, dict):
        return _copy_dict(value, depth + 1)
    if isinstance(value, list | tuple):
        return _copy_list(value, depth + 1)
    raise _Rejected(f"{_name(value)} is not serializable")


def _check_int(value: int) -> int:
    if _INT_MIN <= value <= _INT_MAX:
        return value
    raise _Rejected(f"int {value} does not fit in 64 bits")


def _bad_key(key: object) -> str:
    return f"dict key {key!r} is {_name(key)}, not str"


def _name(value: object) -> str:
    return type(value).__qualname__
