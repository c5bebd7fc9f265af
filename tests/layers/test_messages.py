"""Conformance: what a message may hold, and that receivers get their own copy."""

from __future__ import annotations

import datetime
import enum
import re
from typing import Any

import pytest

from gateway.exceptions import MessageTypeError, UnserializableMessage
from gateway.layers import BaseChannelLayer

from .helpers import receive


class Colour(enum.IntEnum):
    RED = 1


@pytest.mark.parametrize(
    "message",
    [None, "text", ["type", "x"], {"text": "no type"}, {"type": 3}, {"type": None}],
    ids=repr,
)
async def test_message_must_be_a_dict_with_a_str_type(
    layer: BaseChannelLayer, message: Any
) -> None:
    with pytest.raises(MessageTypeError):
        await layer.send("channel", message)
    with pytest.raises(MessageTypeError):
        await layer.group_send("group", message)


@pytest.mark.parametrize(
    ("message", "error"),
    [
        (
            {"type": "t", "data": [1, 2, datetime.date(2024, 1, 1)]},
            "message['data'][2]: date is not serializable",
        ),
        ({"type": "t", "when": datetime.datetime.now()}, "message['when']: datetime is not"),
        ({"type": "t", "tags": {"a", "b"}}, "message['tags']: set is not serializable"),
        ({"type": "t", "a": {"b": [{"c": object()}]}}, "message['a']['b'][0]['c']: object is not"),
        ({"type": "t", 3: "x"}, "message: dict key 3 is int, not str"),
        ({"type": "t", "d": {(1, 2): "x"}}, "message['d']: dict key (1, 2) is tuple, not str"),
        ({"type": "t", "big": 2**64}, "message['big']: int 18446744073709551616 does not fit"),
        ({"type": "t", "n": [-(2**63) - 1]}, "message['n'][0]: int"),
        ({"type": "t", "c": 1j}, "message['c']: complex is not serializable"),
    ],
    ids=[
        "date-in-list",
        "datetime",
        "set",
        "deep-object",
        "int-key",
        "tuple-key",
        "big-int",
        "small-int",
        "complex",
    ],
)
async def test_unserializable_values_are_named_with_their_path(
    layer: BaseChannelLayer, message: dict[str, Any], error: str
) -> None:
    with pytest.raises(UnserializableMessage, match=re.escape(error)):
        await layer.send("channel", message)
    # The same check runs for group sends, even to a group without members.
    with pytest.raises(UnserializableMessage, match=re.escape(error)):
        await layer.group_send("nobody", message)


async def test_unserializable_is_a_type_error(layer: BaseChannelLayer) -> None:
    with pytest.raises(TypeError):
        await layer.send("channel", {"type": "t", "x": object()})


async def test_a_message_containing_itself_is_refused(layer: BaseChannelLayer) -> None:
    looped: dict[str, Any] = {"type": "t"}
    looped["self"] = [looped]
    with pytest.raises(UnserializableMessage, match="nest deeper than"):
        await layer.send("channel", looped)


ALL_TYPES: dict[str, Any] = {
    "type": "test.all",
    "none": None,
    "flags": [True, False],
    "ints": [0, -1, 2**63 - 1, -(2**63), 2**64 - 1],
    "float": 1.5,
    "text": "h\u00e9llo",
    "bytes": b"\x00\xff",
    "nested": {"list": [{"deep": ["er"]}], "empty": {}},
}


async def test_every_serializable_type_arrives_intact(layer: BaseChannelLayer) -> None:
    await layer.send("all-types", ALL_TYPES)
    received = await receive(layer, "all-types")
    assert received == ALL_TYPES
    assert [type(flag) for flag in received["flags"]] == [bool, bool]


async def test_every_serializable_type_reaches_each_group_member(
    layer: BaseChannelLayer,
) -> None:
    for member in ("one", "two", "three"):
        await layer.group_add("all-types", member)
    await layer.group_send("all-types", ALL_TYPES)
    for member in ("one", "two", "three"):
        received = await receive(layer, member)
        assert received == ALL_TYPES
        assert [type(flag) for flag in received["flags"]] == [bool, bool]
        assert type(received["bytes"]) is bytes


async def test_values_arrive_as_the_wire_would_carry_them(layer: BaseChannelLayer) -> None:
    await layer.send(
        "normalised",
        {"type": "t", "pair": (1, (2, 3)), "buffer": bytearray(b"ab"), "colour": Colour.RED},
    )
    received = await receive(layer, "normalised")
    assert received == {"type": "t", "pair": [1, [2, 3]], "buffer": b"ab", "colour": 1}
    assert type(received["buffer"]) is bytes
    assert type(received["colour"]) is int


async def test_sender_changes_after_send_do_not_reach_the_receiver(
    layer: BaseChannelLayer,
) -> None:
    message: dict[str, Any] = {"type": "t", "items": [1, 2], "meta": {"k": "v"}}
    await layer.send("isolated", message)
    message["items"].append(3)
    message["meta"]["k"] = "changed"
    message["extra"] = True
    assert await receive(layer, "isolated") == {"type": "t", "items": [1, 2], "meta": {"k": "v"}}


async def test_receivers_of_a_group_send_get_separate_copies(layer: BaseChannelLayer) -> None:
    for member in ("one", "two", "three"):
        await layer.group_add("copies", member)
    message: dict[str, Any] = {"type": "t", "items": [1], "meta": {"k": "v"}, "n": 1}
    await layer.group_send("copies", message)
    first = await receive(layer, "one")
    first["items"].append("mutated")
    first["meta"]["k"] = "mutated"
    first["n"] = 2
    for member in ("two", "three"):
        assert await receive(layer, member) == {
            "type": "t",
            "items": [1],
            "meta": {"k": "v"},
            "n": 1,
        }
    assert message == {"type": "t", "items": [1], "meta": {"k": "v"}, "n": 1}


async def test_flat_group_messages_are_separate_copies_too(layer: BaseChannelLayer) -> None:
    await layer.group_add("flat", "one")
    await layer.group_add("flat", "two")
    await layer.group_send("flat", {"type": "t", "text": "hi"})
    first = await receive(layer, "one")
    first["text"] = "mutated"
    assert await receive(layer, "two") == {"type": "t", "text": "hi"}
