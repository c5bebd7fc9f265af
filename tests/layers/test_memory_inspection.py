"""`InMemoryChannelLayer.channels` and `.groups`, which users' tests inspect as in Channels.

Each test runs against our layer and Channels' (when installed): the same calls, the same
expectations.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.layers import InMemoryChannelLayer

from .helpers import nothing_waiting, receive, waiting_receive
from .reference import IMPLEMENTATIONS, import_reference


def memory_layer(name: str, **config: Any) -> Any:
    """An in-memory layer of ours, or of Channels when the reference is installed."""
    if name == "channels":
        return import_reference("channels.layers").InMemoryChannelLayer(**config)
    return InMemoryChannelLayer(**config)


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
async def test_a_channel_is_listed_until_its_last_message_is_received(name: str) -> None:
    layer = memory_layer(name)
    await layer.send("inbox", {"type": "t", "n": 1})
    await layer.send("inbox", {"type": "t", "n": 2})
    assert list(layer.channels) == ["inbox"]
    assert layer.channels["inbox"].qsize() == 2
    await receive(layer, "inbox")
    assert "inbox" in layer.channels
    await receive(layer, "inbox")
    assert "inbox" not in layer.channels
    assert len(layer.channels) == 0


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
async def test_a_waiting_receiver_lists_its_channel(name: str) -> None:
    layer = memory_layer(name)
    task = await waiting_receive(layer, "listening")
    assert list(layer.channels.keys()) == ["listening"]
    assert layer.channels["listening"].empty()
    await layer.send("listening", {"type": "t"})
    assert await asyncio.wait_for(task, 10) == {"type": "t"}


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
async def test_deleting_a_channel_after_a_hand_off_keeps_the_message(name: str) -> None:
    layer = memory_layer(name)
    task = await waiting_receive(layer, "race")
    await layer.send("race", {"type": "t"})
    del layer.channels["race"]
    assert await asyncio.wait_for(task, 10) == {"type": "t"}


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
async def test_deleting_a_channel_drops_its_messages(name: str) -> None:
    layer = memory_layer(name)
    await layer.send("dropped", {"type": "t"})
    del layer.channels["dropped"]
    assert len(layer.channels) == 0
    assert await nothing_waiting(layer, "dropped")


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
async def test_an_expired_message_is_listed_until_a_receive_sweeps_it(name: str) -> None:
    layer = memory_layer(name, expiry=0.1)
    await layer.send("unread", {"type": "t"})
    await asyncio.sleep(0.1)
    await layer.send("read", {"type": "t"})
    assert len(layer.channels) == 2
    await receive(layer, "read")
    assert len(layer.channels) == 0


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
async def test_groups_maps_each_group_to_its_members(name: str) -> None:
    layer = memory_layer(name)
    await layer.group_add("room", "a")
    await layer.group_add("room", "b")
    assert set(layer.groups) == {"room"}
    assert set(layer.groups["room"]) == {"a", "b"}
    await layer.group_discard("room", "a")
    await layer.group_discard("room", "b")
    assert not layer.groups.get("room")
    await layer.flush()
    assert layer.groups == {}
