"""Conformance: sending and receiving on channels, for every layer backend."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable

import pytest

from gateway.exceptions import ChannelFull, InvalidChannelName
from gateway.layers import BaseChannelLayer

from .conftest import LayerFactory
from .helpers import nothing_waiting, receive, waiting_receive


async def test_send_then_receive(layer: BaseChannelLayer) -> None:
    await layer.send("test-channel", {"type": "test.message", "text": "hello"})
    assert await receive(layer, "test-channel") == {"type": "test.message", "text": "hello"}


async def test_receive_waits_for_a_later_send(layer: BaseChannelLayer) -> None:
    task = await waiting_receive(layer, "later")
    await layer.send("later", {"type": "test.message", "n": 1})
    assert await asyncio.wait_for(task, 10) == {"type": "test.message", "n": 1}


async def test_messages_keep_their_order_per_channel(layer: BaseChannelLayer) -> None:
    for n in range(50):
        await layer.send("ordered", {"type": "test.message", "n": n})
    received = [(await receive(layer, "ordered"))["n"] for _ in range(50)]
    assert received == list(range(50))


async def test_channels_are_separate(layer: BaseChannelLayer) -> None:
    await layer.send("first", {"type": "test.first"})
    await layer.send("second", {"type": "test.second"})
    assert (await receive(layer, "second"))["type"] == "test.second"
    assert (await receive(layer, "first"))["type"] == "test.first"
    assert await nothing_waiting(layer, "first")


async def test_specific_channel_from_new_channel(layer: BaseChannelLayer) -> None:
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "test.message"})
    assert await receive(layer, channel) == {"type": "test.message"}


async def test_new_channel_names_are_unique_and_valid(layer: BaseChannelLayer) -> None:
    names = {await layer.new_channel() for _ in range(500)}
    names |= {layer.new_channel_name() for _ in range(500)}
    assert len(names) == 1000
    for name in names:
        assert name.startswith("specific.")
        assert "!" in name
        assert layer.require_valid_channel_name(name)


async def test_new_channel_uses_the_prefix(layer: BaseChannelLayer) -> None:
    assert (await layer.new_channel("chat")).startswith("chat.")
    assert layer.new_channel_name(prefix="worker").startswith("worker.")


async def test_capacity_raises_channel_full(layer_factory: LayerFactory) -> None:
    layer = layer_factory(capacity=3)
    for n in range(3):
        await layer.send("bounded", {"type": "test.message", "n": n})
    with pytest.raises(ChannelFull):
        await layer.send("bounded", {"type": "test.message", "n": 3})
    assert (await receive(layer, "bounded"))["n"] == 0
    await layer.send("bounded", {"type": "test.message", "n": 4})
    assert [(await receive(layer, "bounded"))["n"] for _ in range(3)] == [1, 2, 4]


async def test_channel_capacity_patterns(layer_factory: LayerFactory) -> None:
    layer = layer_factory(capacity=2, channel_capacity={"tiny.*": 1, re.compile(r"^large"): 4})
    for channel, capacity in [("tiny.one", 1), ("large-queue", 4), ("other", 2)]:
        for n in range(capacity):
            await layer.send(channel, {"type": "test.message", "n": n})
        with pytest.raises(ChannelFull):
            await layer.send(channel, {"type": "test.message"})


async def test_expired_messages_are_not_delivered(layer_factory: LayerFactory) -> None:
    layer = layer_factory(expiry=1)
    await layer.send("expiring", {"type": "test.stale"})
    await asyncio.sleep(1.5)
    await layer.send("expiring", {"type": "test.fresh"})
    assert (await receive(layer, "expiring"))["type"] == "test.fresh"
    assert await nothing_waiting(layer, "expiring")


async def test_flush_drops_messages_and_groups(layer: BaseChannelLayer) -> None:
    await layer.send("flushed", {"type": "test.message"})
    await layer.group_add("flushed-group", "member")
    await layer.flush()
    assert await nothing_waiting(layer, "flushed")
    await layer.group_send("flushed-group", {"type": "test.message"})
    assert await nothing_waiting(layer, "member")


async def test_close_is_idempotent_and_layer_stays_usable(layer: BaseChannelLayer) -> None:
    await layer.close()
    await layer.close()
    await layer.send("after-close", {"type": "test.message"})
    assert await receive(layer, "after-close") == {"type": "test.message"}


async def test_concurrent_receivers_each_get_a_different_message(
    layer: BaseChannelLayer,
) -> None:
    tasks = [await waiting_receive(layer, "shared") for _ in range(5)]
    for n in range(5):
        await layer.send("shared", {"type": "test.message", "n": n})
    results = await asyncio.wait_for(asyncio.gather(*tasks), 10)
    assert sorted(message["n"] for message in results) == list(range(5))
    assert await nothing_waiting(layer, "shared")


async def test_cancelled_receive_before_send_loses_nothing(layer: BaseChannelLayer) -> None:
    task = await waiting_receive(layer, "cancelled")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await layer.send("cancelled", {"type": "test.message"})
    assert await receive(layer, "cancelled") == {"type": "test.message"}


async def test_receive_cancelled_right_after_send_keeps_the_message(
    layer: BaseChannelLayer,
) -> None:
    task = await waiting_receive(layer, "race")
    await layer.send("race", {"type": "test.message", "n": 1})
    task.cancel()  # before the receiving task had a chance to run
    try:
        message = await task
    except asyncio.CancelledError:
        message = await receive(layer, "race")
    assert message == {"type": "test.message", "n": 1}
    assert await nothing_waiting(layer, "race")


async def test_timed_out_receive_loses_nothing(layer: BaseChannelLayer) -> None:
    assert await nothing_waiting(layer, "timeout")
    await layer.send("timeout", {"type": "test.message"})
    assert await receive(layer, "timeout") == {"type": "test.message"}


@pytest.mark.parametrize(
    "name",
    ["has space", "caf\u00e9", "digit\u0661", "newline\n", "", "!local", "a!b!c", "x" * 100],
    ids=[
        "space",
        "non-ascii",
        "non-ascii-digit",
        "newline",
        "empty",
        "bang-first",
        "two-bangs",
        "too-long",
    ],
)
async def test_invalid_channel_names(layer: BaseChannelLayer, name: str) -> None:
    operations: list[Callable[[], Awaitable[object]]] = [
        lambda: layer.send(name, {"type": "test.message"}),
        lambda: layer.receive(name),
        lambda: layer.group_add("group", name),
        lambda: layer.group_discard("group", name),
    ]
    for operation in operations:
        with pytest.raises(InvalidChannelName, match="invalid channel name") as caught:
            await operation()
        assert repr(name) in str(caught.value)
        assert "ASCII" in str(caught.value)


@pytest.mark.parametrize("name", [None, b"bytes", 5, ["list"]], ids=repr)
async def test_channel_names_must_be_str(layer: BaseChannelLayer, name: object) -> None:
    with pytest.raises(InvalidChannelName, match=re.escape(repr(name))):
        await layer.send(name, {"type": "test.message"})  # type: ignore[arg-type]
    with pytest.raises(TypeError):  # as in Channels, naming errors are TypeErrors
        await layer.receive(name)  # type: ignore[arg-type]


async def test_longest_valid_names(layer: BaseChannelLayer) -> None:
    channel = "c" * 99
    await layer.send(channel, {"type": "test.message"})
    assert await receive(layer, channel) == {"type": "test.message"}
    await layer.group_add("g" * 99, "a.b_c-d!e.f")
