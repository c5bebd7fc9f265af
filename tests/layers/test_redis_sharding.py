"""The Redis layer over several Redis hosts: consistent hashing and group sends across them."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import Redis

from gateway.layers.redis import RedisChannelLayer
from gateway.layers.redis.config import HashRing
from tests.integration.redis import RedisServer, running_redis

from .conftest import redis_layer_config
from .helpers import nothing_waiting, receive

pytestmark = pytest.mark.integration


@pytest.fixture
def two_servers() -> Iterator[tuple[RedisServer, RedisServer]]:
    with running_redis() as first, running_redis() as second:
        yield first, second


@pytest.fixture
async def sharded(
    two_servers: tuple[RedisServer, RedisServer],
) -> AsyncIterator[RedisChannelLayer]:
    layer = RedisChannelLayer(**redis_layer_config(*(server.url for server in two_servers)))
    yield layer
    await layer.flush()
    await layer.close()


def _names_on_each_shard(layer: RedisChannelLayer, count: int) -> list[list[str]]:
    """`count` specific channel names placed on each of the layer's hosts."""
    found: list[list[str]] = [[] for _ in range(layer.ring.size)]
    # The host of a specific channel depends on its part up to the '!': vary the prefix.
    prefixes = itertools.count()
    while any(len(names) < count for names in found):
        channel = layer.new_channel_name(prefix=f"p{next(prefixes)}")
        names = found[layer.shard_index(channel)]
        if len(names) < count:
            names.append(channel)
    return found


def test_ring_moves_few_names_when_a_host_is_added() -> None:
    names = [f"channel-{n}" for n in range(5000)]
    three = HashRing(["a:6379", "b:6379", "c:6379"])
    four = HashRing(["a:6379", "b:6379", "c:6379", "d:6379"])
    moved = [name for name in names if three.shard_of(name) != four.shard_of(name)]
    # Ideally 1/4 move, all of them to the new host; modulo hashing would move 3/4.
    assert len(moved) < 0.4 * len(names)
    assert {four.shard_of(name) for name in moved} == {3}
    counts = [sum(1 for name in names if four.shard_of(name) == shard) for shard in range(4)]
    assert min(counts) > 0.1 * len(names)


async def test_channels_live_on_their_own_host(
    sharded: RedisChannelLayer, two_servers: tuple[RedisServer, RedisServer]
) -> None:
    on_shard = _names_on_each_shard(sharded, 1)
    for index, (channel,) in enumerate(on_shard):
        await sharded.send(channel, {"type": "test.message", "shard": index})
    for index, server in enumerate(two_servers):
        client = Redis.from_url(server.url)
        try:
            found = await client.keys(f"{sharded.prefix}:c:*")
            keys = {key.decode() if isinstance(key, bytes) else key for key in found}
        finally:
            await client.aclose()
        channel = on_shard[index][0]
        # The process's inbox for that prefix, and nothing on the other host.
        assert keys == {sharded.list_key(channel)}
    for index, (channel,) in enumerate(on_shard):
        assert (await receive(sharded, channel))["shard"] == index


async def test_group_send_reaches_members_on_every_host(sharded: RedisChannelLayer) -> None:
    first, second = _names_on_each_shard(sharded, 3)
    shared = ["worker-a", "worker-b", "worker-c", "worker-d"]  # normal channels, hashed too
    for channel in [*first, *second, *shared]:
        await sharded.group_add("everyone", channel)
    waiting = [asyncio.create_task(sharded.receive(channel)) for channel in first]
    await asyncio.sleep(0.05)
    await sharded.group_send("everyone", {"type": "test.all", "n": 1})
    assert (
        await asyncio.wait_for(asyncio.gather(*waiting), 10) == [{"type": "test.all", "n": 1}] * 3
    )
    for channel in [*second, *shared]:
        assert await receive(sharded, channel) == {"type": "test.all", "n": 1}
        assert await nothing_waiting(sharded, channel)


async def test_expired_members_are_trimmed_on_their_own_host(
    two_servers: tuple[RedisServer, RedisServer],
) -> None:
    layer = RedisChannelLayer(
        **redis_layer_config(*(server.url for server in two_servers), group_expiry=1)
    )
    clients = [Redis.from_url(server.url) for server in two_servers]
    try:
        first, second = _names_on_each_shard(layer, 2)
        for channel in [*first, *second]:
            await layer.group_add("fading", channel)
        # Each host keeps its own members under the same key (one prefix for every host).
        key = layer.group_key("fading", 0)
        assert layer.group_key("fading", 1) == key
        assert [await client.zcard(key) for client in clients] == [2, 2]
        await asyncio.sleep(1.5)
        await layer.group_add("fading", first[0])  # renewed: survives the trim
        await layer.group_send("fading", {"type": "test.message"})
        assert [await client.zcard(key) for client in clients] == [1, 0]
        assert await receive(layer, first[0]) == {"type": "test.message"}
        for channel in [first[1], *second]:
            assert await nothing_waiting(layer, channel)
    finally:
        for client in clients:
            await client.aclose()
        await layer.flush()
        await layer.close()


async def test_flush_empties_every_host(
    sharded: RedisChannelLayer, two_servers: tuple[RedisServer, RedisServer]
) -> None:
    for names in _names_on_each_shard(sharded, 2):
        for channel in names:
            await sharded.send(channel, {"type": "test.message"})
            await sharded.group_add("room", channel)
    await sharded.flush()
    for server in two_servers:
        client = Redis.from_url(server.url)
        try:
            assert await client.keys(f"{sharded.prefix}:*") == []
        finally:
            await client.aclose()
