"""The Redis layer finding its Redis through Sentinel (Channels' host format)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from gateway.layers.redis import RedisChannelLayer
from tests.integration.redis import RedisSentinel, RedisServer, running_redis, running_sentinel

from .conftest import redis_layer_config
from .helpers import WAIT, receive

pytestmark = pytest.mark.integration


@pytest.fixture
def sentinel(own_redis_server: RedisServer) -> Iterator[RedisSentinel]:
    with running_sentinel(own_redis_server) as running:
        yield running


def _layer(sentinel: RedisSentinel) -> RedisChannelLayer:
    host = {"sentinels": [("127.0.0.1", sentinel.port)], "master_name": sentinel.master_name}
    config = redis_layer_config(durable=["jobs.*"]) | {"hosts": [host]}
    return RedisChannelLayer(**config)


async def test_the_layer_works_through_sentinel(sentinel: RedisSentinel) -> None:
    layer = _layer(sentinel)
    try:
        channel = await layer.new_channel()
        await layer.send(channel, {"type": "test.direct"})
        assert await receive(layer, channel) == {"type": "test.direct"}
        await layer.group_add("room", channel)
        await layer.group_send("room", {"type": "test.group"})
        assert await receive(layer, channel) == {"type": "test.group"}
        await layer.send("jobs.one", {"type": "job.run"})  # durable: redis-py via Sentinel
        delivery = await asyncio.wait_for(layer.receive_delivery("jobs.one"), WAIT)
        assert delivery.message == {"type": "job.run"}
        await delivery.ack()
    finally:
        await layer.flush()
        await layer.close()


async def test_a_restarted_master_is_found_again(
    sentinel: RedisSentinel, own_redis_server: RedisServer
) -> None:
    layer = _layer(sentinel)
    try:
        channel = await layer.new_channel()
        await layer.group_add("room", channel)
        waiting = asyncio.create_task(layer.receive(channel))
        await asyncio.sleep(0.1)
        await asyncio.to_thread(own_redis_server.restart)
        async with asyncio.timeout(WAIT):
            while not waiting.done():  # memberships come back once the receiver reconnected
                await layer.group_send("room", {"type": "test.after"})
                await asyncio.wait({waiting}, timeout=0.1)
        assert waiting.result() == {"type": "test.after"}
    finally:
        await layer.flush()
        await layer.close()


async def test_a_failover_to_the_replica_is_followed(own_redis_server: RedisServer) -> None:
    """The master dies for good; Sentinel promotes its replica; sends and waiting receives
    carry on against the new master."""
    with running_redis() as replica:
        replica.extra_args = ["--replicaof", "127.0.0.1", str(own_redis_server.port)]
        await asyncio.to_thread(replica.restart)
        while b"master_link_status:up" not in replica.command("INFO replication"):
            await asyncio.sleep(0.05)
        with running_sentinel(own_redis_server) as sentinel:
            layer = _layer(sentinel)
            layer.unavailable_after = 20.0  # a failover takes a few seconds
            try:
                channel = await layer.new_channel()
                await layer.group_add("room", channel)
                await layer.send(channel, {"type": "test.before"})
                assert await receive(layer, channel) == {"type": "test.before"}
                waiting = asyncio.create_task(layer.receive(channel))
                await asyncio.sleep(0.1)

                await asyncio.to_thread(own_redis_server.stop)  # gone; the replica takes over
                await layer.send(channel, {"type": "test.after"})
                assert await asyncio.wait_for(waiting, WAIT) == {"type": "test.after"}
                assert b"role:master" in replica.command("INFO replication")
                await layer.group_send("room", {"type": "test.group"})
                assert await receive(layer, channel) == {"type": "test.group"}
            finally:
                await layer.flush()
                await layer.close()
