"""The message check agrees with msgpack, the format the Redis layer puts on the wire."""

from __future__ import annotations

import enum
from typing import Any

import pytest

from gateway.layers.serialization import copier, copy_message

msgpack = pytest.importorskip("msgpack")


class Mode(enum.StrEnum):
    FAST = "fast"


@pytest.mark.parametrize(
    "message",
    [
        {"type": "flat", "text": "hi", "n": 1, "x": 0.5, "ok": True, "none": None},
        {"type": "bytes", "raw": b"\x00\x01", "buffer": bytearray(b"ab")},
        {"type": "nested", "a": [1, (2, 3), {"b": [{"c": []}]}], "big": 2**64 - 1},
        {"type": "subclasses", "mode": Mode.FAST, "small": -(2**63)},
    ],
    ids=["flat", "bytes", "nested", "subclasses"],
)
def test_checked_copy_equals_its_msgpack_round_trip(message: dict[str, Any]) -> None:
    checked, nested = copy_message(message)
    wire = msgpack.unpackb(msgpack.packb(message, use_bin_type=True), raw=False)
    assert checked == wire
    assert copier(checked, nested)() == wire


def test_copier_copies_are_independent() -> None:
    checked, nested = copy_message({"type": "t", "items": [{"k": [1]}]})
    assert nested
    make = copier(checked, nested)
    first, second = make(), make()
    first["items"][0]["k"].append(2)
    assert second == {"type": "t", "items": [{"k": [1]}]}
    assert checked == {"type": "t", "items": [{"k": [1]}]}


def test_flat_messages_are_told_apart() -> None:
    assert copy_message({"type": "t", "text": "x", "n": 1})[1] is False
    assert copy_message({"type": "t", "list": []})[1] is True
