"""Conformance: groups, for every layer backend."""

from __future__ import annotations

import asyncio

import pytest

from gateway.exceptions import InvalidChannelName
from gateway.layers import BaseChannelLayer

from .conftest import LayerFactory
from .helpers import nothing_waiting, receive


async def test_group_send_reaches_every_member(layer: BaseChannelLayer) -> None:
    await layer.group_add("room", "alice")
    await layer.group_add("room", "bob")
    await layer.group_send("room", {"type": "chat.message", "text": "hi"})
    for member in ("alice", "bob"):
        assert await receive(layer, member) == {"type": "chat.message", "text": "hi"}
        assert await nothing_waiting(layer, member)


async def test_group_send_wakes_waiting_receivers(layer: BaseChannelLayer) -> None:
    channels = [await layer.new_channel() for _ in range(3)]
    for channel in channels:
        await layer.group_add("live", channel)
    tasks = [asyncio.create_task(layer.receive(channel)) for channel in channels]
    await asyncio.sleep(0.05)
    await layer.group_send("live", {"type": "test.message"})
    assert await asyncio.wait_for(asyncio.gather(*tasks), 10) == [{"type": "test.message"}] * 3


async def test_discarded_member_gets_nothing(layer: BaseChannelLayer) -> None:
    await layer.group_add("room", "stays")
    await layer.group_add("room", "leaves")
    await layer.group_discard("room", "leaves")
    await layer.group_send("room", {"type": "test.message"})
    assert await receive(layer, "stays") == {"type": "test.message"}
    assert await nothing_waiting(layer, "leaves")


async def test_discard_of_a_non_member_is_harmless(layer: BaseChannelLayer) -> None:
    await layer.group_discard("nobody-here", "stranger")
    await layer.group_add("room", "member")
    await layer.group_discard("room", "stranger")
    await layer.group_send("room", {"type": "test.message"})
    assert await receive(layer, "member") == {"type": "test.message"}


async def test_send_to_an_empty_group_does_nothing(layer: BaseChannelLayer) -> None:
    await layer.group_send("empty", {"type": "test.message"})
    await layer.group_add("emptied", "gone")
    await layer.group_discard("emptied", "gone")
    await layer.group_send("emptied", {"type": "test.message"})
    assert await nothing_waiting(layer, "gone")


async def test_member_of_several_groups(layer: BaseChannelLayer) -> None:
    await layer.group_add("red", "both")
    await layer.group_add("blue", "both")
    await layer.group_send("red", {"type": "test.red"})
    await layer.group_send("blue", {"type": "test.blue"})
    assert (await receive(layer, "both"))["type"] == "test.red"
    assert (await receive(layer, "both"))["type"] == "test.blue"
    await layer.group_discard("red", "both")
    await layer.group_send("red", {"type": "test.red"})
    await layer.group_send("blue", {"type": "test.blue"})
    assert (await receive(layer, "both"))["type"] == "test.blue"
    assert await nothing_waiting(layer, "both")


async def test_adding_twice_delivers_once(layer: BaseChannelLayer) -> None:
    await layer.group_add("room", "twice")
    await layer.group_add("room", "twice")
    await layer.group_send("room", {"type": "test.message"})
    assert await receive(layer, "twice") == {"type": "test.message"}
    assert await nothing_waiting(layer, "twice")


async def test_group_send_skips_full_channels(layer_factory: LayerFactory) -> None:
    layer = layer_factory(capacity=1)
    await layer.group_add("room", "full")
    await layer.group_add("room", "free")
    await layer.send("full", {"type": "test.first"})
    await layer.group_send("room", {"type": "test.group"})  # must not raise
    assert (await receive(layer, "free"))["type"] == "test.group"
    assert (await receive(layer, "full"))["type"] == "test.first"
    assert await nothing_waiting(layer, "full")


async def test_group_membership_expires(layer_factory: LayerFactory) -> None:
    layer = layer_factory(group_expiry=1)
    await layer.group_add("short-lived", "member")
    await asyncio.sleep(1.5)
    await layer.group_send("short-lived", {"type": "test.group"})
    await layer.send("member", {"type": "test.direct"})
    assert (await receive(layer, "member"))["type"] == "test.direct"
    assert await nothing_waiting(layer, "member")


async def test_adding_again_renews_membership(layer_factory: LayerFactory) -> None:
    layer = layer_factory(group_expiry=2)
    await layer.group_add("renewed", "member")
    await asyncio.sleep(1.2)
    await layer.group_add("renewed", "member")
    await asyncio.sleep(1.2)
    await layer.group_send("renewed", {"type": "test.group"})
    assert (await receive(layer, "member"))["type"] == "test.group"


async def test_specific_members_expire_and_renew_one_by_one(
    layer_factory: LayerFactory,
) -> None:
    """Channels of one process share an inbox; each membership still lasts on its own."""
    layer = layer_factory(group_expiry=2)
    renewed, lapsed = await layer.new_channel(), await layer.new_channel()
    for channel in (renewed, lapsed):
        await layer.group_add("room", channel)
    await asyncio.sleep(1.2)
    await layer.group_add("room", renewed)
    await asyncio.sleep(1.2)
    await layer.group_send("room", {"type": "test.group"})
    assert (await receive(layer, renewed))["type"] == "test.group"
    assert await nothing_waiting(layer, lapsed)


async def test_a_group_whose_specific_members_all_left_can_be_joined_again(
    layer: BaseChannelLayer,
) -> None:
    first, second = await layer.new_channel(), await layer.new_channel()
    for channel in (first, second):
        await layer.group_add("room", channel)
        await layer.group_discard("room", channel)
    await layer.group_send("room", {"type": "test.nobody"})
    assert await nothing_waiting(layer, first)
    assert await nothing_waiting(layer, second)
    await layer.group_add("room", second)
    await layer.group_send("room", {"type": "test.again"})
    assert (await receive(layer, second))["type"] == "test.again"
    assert await nothing_waiting(layer, first)


async def test_group_send_skips_a_full_specific_channel(layer_factory: LayerFactory) -> None:
    layer = layer_factory(capacity=1)
    full, free, busy = [await layer.new_channel() for _ in range(3)]
    await layer.group_add("room", full)
    await layer.group_add("room", free)
    listening = asyncio.create_task(layer.receive(busy))  # the process reads its channels
    await layer.send(full, {"type": "test.first"})
    await asyncio.sleep(0.3)  # received into the channel's buffer, which is now full
    await layer.group_send("room", {"type": "test.group"})  # must not raise
    assert (await receive(layer, free))["type"] == "test.group"
    assert (await receive(layer, full))["type"] == "test.first"
    assert await nothing_waiting(layer, full)
    listening.cancel()


async def test_group_send_to_a_thousand_members_delivers_one_copy_each(
    layer: BaseChannelLayer,
) -> None:
    members = [layer.new_channel_name("member") for _ in range(1000)]
    for channel in members:
        await layer.group_add("crowd", channel)
    await layer.group_send("crowd", {"type": "test.broadcast", "payload": [1, 2, 3]})
    for channel in members:
        await layer.send(channel, {"type": "test.end"})
    for channel in members:
        assert await receive(layer, channel) == {"type": "test.broadcast", "payload": [1, 2, 3]}
        assert (await receive(layer, channel))["type"] == "test.end"


@pytest.mark.parametrize(
    "group", ["has space", "bang!", "caf\u00e9", "", "g" * 100, None, b"room", 3], ids=repr
)
async def test_invalid_group_names(layer: BaseChannelLayer, group: object) -> None:
    with pytest.raises(InvalidChannelName, match="invalid group name") as caught:
        await layer.group_add(group, "channel")  # type: ignore[arg-type]
    assert repr(group) in str(caught.value)
    with pytest.raises(InvalidChannelName, match="invalid group name"):
        await layer.group_discard(group, "channel")  # type: ignore[arg-type]
    with pytest.raises(InvalidChannelName, match="invalid group name"):
        await layer.group_send(group, {"type": "test.message"})  # type: ignore[arg-type]
