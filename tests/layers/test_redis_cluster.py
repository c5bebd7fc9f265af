"""The Redis layer on a Redis Cluster: hash tags, slots spread over nodes, failover, resharding.

The conformance suite runs on a cluster too (the "redis-cluster" backend); these tests cover
what only a cluster has.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.crc import key_slot

from gateway.exceptions import ImproperlyConfiguredGateway
from gateway.layers.redis import RedisChannelLayer
from gateway.layers.redis.cluster import SLOTS, cluster_tags
from tests.integration.redis import RedisCluster, RedisServer, running_cluster

from .conftest import redis_layer_config
from .helpers import WAIT, nothing_waiting, receive

pytestmark = pytest.mark.integration

_TAG = re.compile(rb"\{([^}]*)\}")


def _cluster_layer(cluster: RedisCluster, **config: Any) -> RedisChannelLayer:
    return RedisChannelLayer(**redis_layer_config(cluster.urls[0], cluster=True, **config))


def _slot_of(layer: RedisChannelLayer, channel: str) -> int:
    return key_slot(layer.tags[layer.shard_index(channel)].encode())


async def _keys(cluster: RedisCluster, prefix: str) -> dict[int, list[bytes]]:
    """Every key under `prefix`, by the port of the master holding it."""
    found: dict[int, list[bytes]] = {}
    for node in cluster.running():
        client = Redis(port=node.port)
        try:
            if (await client.execute_command("ROLE"))[0] == b"master":
                found[node.port] = await client.keys(f"{prefix}:*")
        finally:
            await client.aclose()
    return found


@pytest.fixture
async def layers(redis_cluster: RedisCluster) -> AsyncIterator[list[RedisChannelLayer]]:
    """Layers standing for processes; all closed (and the keys flushed) afterwards."""
    made: list[RedisChannelLayer] = []
    yield made
    if made:
        await made[0].flush()
    for layer in made:
        await layer.close()


def test_the_tags_split_the_slots_evenly_and_never_change() -> None:
    for count in (1, 3, 16, 64):
        tags = cluster_tags(count)
        slots = [key_slot(tag.encode()) for tag in tags]
        assert len(set(tags)) == count
        for index, slot in enumerate(slots):
            assert index * SLOTS // count <= slot < (index + 1) * SLOTS // count
        assert cluster_tags(count) == tags  # every process computes the same


async def test_every_key_of_a_shard_is_in_its_tags_slot_and_the_shards_span_every_node(
    redis_cluster: RedisCluster, layers: list[RedisChannelLayer]
) -> None:
    layer = _cluster_layer(redis_cluster)
    layers.append(layer)
    specific = await layer.new_channel()
    await layer.send(specific, {"type": "test.one"})
    for n in range(60):
        await layer.send(f"jobs.{n}", {"type": "test.job"})
        await layer.group_add("room", f"jobs.{n}")
    keys = await _keys(redis_cluster, layer.prefix)
    assert len(keys) == 3
    assert all(keys.values()), keys  # every master holds some
    for node_keys in keys.values():
        for key in node_keys:
            tag = _TAG.search(key)
            assert tag is not None, key
            assert key_slot(key) == key_slot(tag.group(1))
    await layer.group_send("room", {"type": "test.all"})
    for n in range(60):
        assert await receive(layer, f"jobs.{n}") == {"type": "test.job"}
        assert await receive(layer, f"jobs.{n}") == {"type": "test.all"}
    assert await receive(layer, specific) == {"type": "test.one"}


async def test_a_group_send_reaches_processes_whose_inboxes_are_on_every_node(
    redis_cluster: RedisCluster, layers: list[RedisChannelLayer]
) -> None:
    members: dict[int, tuple[RedisChannelLayer, str]] = {}  # master port -> a member there
    prefix = f"test-{secrets.token_hex(4)}"
    for _ in range(100):
        if len(members) == 3:
            break
        layer = _cluster_layer(redis_cluster, prefix=prefix)
        channel = await layer.new_channel()
        port = redis_cluster.master_of(_slot_of(layer, channel)).port
        if port in members:
            await layer.close()
            continue
        layers.append(layer)
        members[port] = (layer, channel)
        await layer.group_add("everyone", channel)
    assert len(members) == 3
    sender = _cluster_layer(redis_cluster, prefix=prefix)
    layers.append(sender)
    await sender.group_send("everyone", {"type": "test.hello"})
    for layer, channel in members.values():
        assert await receive(layer, channel) == {"type": "test.hello"}
    for layer, channel in members.values():
        await layer.group_discard("everyone", channel)
    await sender.group_send("everyone", {"type": "test.again"})
    for layer, channel in members.values():
        assert await nothing_waiting(layer, channel)


async def test_a_durable_channel_in_a_cluster_is_acknowledged_after_handling(
    redis_cluster: RedisCluster, layers: list[RedisChannelLayer]
) -> None:
    layer = _cluster_layer(redis_cluster, durable=["jobs.*"], claim_after=0.5)
    layers.append(layer)
    await layer.send("jobs.thumbnails", {"type": "test.job", "n": 1})
    first = await asyncio.wait_for(layer.receive_delivery("jobs.thumbnails"), WAIT)
    assert first.message == {"type": "test.job", "n": 1}
    # Not acknowledged: after claim_after it is delivered again.
    again = await asyncio.wait_for(layer.receive_delivery("jobs.thumbnails"), WAIT)
    assert again.message == first.message
    await again.ack()
    assert await nothing_waiting(layer, "jobs.thumbnails")


@pytest.mark.parametrize(
    ("config", "complaint"),
    [
        ({"prefix": "a{b}"}, "braces"),
        ({"cluster_shards": 0}, "cluster_shards"),
        ({"hosts": [{"sentinels": [("127.0.0.1", 26379)], "master_name": "m"}]}, "Sentinel"),
    ],
)
def test_cluster_configuration_errors_are_clear(config: dict[str, Any], complaint: str) -> None:
    options: dict[str, Any] = {"hosts": ["redis://127.0.0.1:7000"], "cluster": True} | config
    with pytest.raises(ImproperlyConfiguredGateway, match=complaint):
        RedisChannelLayer(**options)


# Failover and resharding: a cluster of the test's own.


@pytest.fixture
def replicated_cluster() -> Iterator[RedisCluster]:
    """Three masters, each with a replica that takes over when it dies."""
    with running_cluster(masters=3, replicas=1) as cluster:
        yield cluster


async def test_a_failover_kills_no_receiver_and_sends_follow_the_new_master(
    replicated_cluster: RedisCluster,
) -> None:
    config = {"unavailable_after": 15.0}
    receiving = _cluster_layer(replicated_cluster, **config)
    channel = await receiving.new_channel()
    slot = _slot_of(receiving, channel)
    dead = replicated_cluster.master_of(slot)
    # The sender's only start-up node is the master about to die: it must find the others
    # from the slot map it read before.
    sending = RedisChannelLayer(
        **redis_layer_config(dead.url, cluster=True, prefix=receiving.prefix, **config)
    )
    try:
        await receiving.group_add("room", channel)
        waiting = asyncio.create_task(receiving.receive(channel))
        await sending.send(channel, {"type": "test.before"})
        assert await asyncio.wait_for(waiting, WAIT) == {"type": "test.before"}
        waiting = asyncio.create_task(receiving.receive(channel))
        await asyncio.sleep(0.1)

        await asyncio.to_thread(dead.stop)  # SIGKILL
        await asyncio.to_thread(replicated_cluster.wait_for_failover, dead, slot)
        assert not waiting.done()  # the waiting receive did not raise

        await sending.send(channel, {"type": "test.after"})  # finds the new master
        assert await asyncio.wait_for(waiting, WAIT) == {"type": "test.after"}
        await sending.group_send("room", {"type": "test.group"})
        assert await receive(receiving, channel) == {"type": "test.group"}
    finally:
        for layer in (receiving, sending):
            await layer.close()


def _move_slot(cluster: RedisCluster, slot: int) -> RedisServer:
    """Migrate `slot`, keys and all, to another master, as `redis-cli --cluster reshard` does."""
    source = cluster.master_of(slot)
    masters = [node for node in cluster.running() if node is not source]
    target = next(node for node in masters if SyncRedis(port=node.port).role()[0] == b"master")
    source_client, target_client = SyncRedis(port=source.port), SyncRedis(port=target.port)
    source_id = source_client.execute_command("CLUSTER MYID").decode()
    target_id = target_client.execute_command("CLUSTER MYID").decode()
    target_client.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", source_id)
    source_client.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", target_id)
    while keys := source_client.execute_command("CLUSTER GETKEYSINSLOT", slot, 100):
        source_client.execute_command(
            "MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys
        )
    for node in cluster.running():
        SyncRedis(port=node.port).execute_command("CLUSTER SETSLOT", slot, "NODE", target_id)
    return target


async def test_a_slot_moved_to_another_node_is_followed_with_its_messages(
    redis_cluster: RedisCluster, layers: list[RedisChannelLayer]
) -> None:
    receiving = _cluster_layer(redis_cluster)
    sending = _cluster_layer(redis_cluster, prefix=receiving.prefix)
    layers += [receiving, sending]
    channel = await receiving.new_channel()
    await receiving.group_add("room", channel)
    waiting = asyncio.create_task(receiving.receive(channel))
    await sending.send("jobs.kept", {"type": "test.kept"})  # waits in Redis through the move
    await asyncio.sleep(0.1)

    slot = _slot_of(receiving, channel)
    await asyncio.to_thread(_move_slot, redis_cluster, slot)
    kept_slot = _slot_of(sending, "jobs.kept")
    if kept_slot != slot:
        await asyncio.to_thread(_move_slot, redis_cluster, kept_slot)
    assert not waiting.done()

    await sending.send(channel, {"type": "test.moved"})
    assert await asyncio.wait_for(waiting, WAIT) == {"type": "test.moved"}
    await sending.group_send("room", {"type": "test.group"})
    assert await receive(receiving, channel) == {"type": "test.group"}
    assert await receive(receiving, "jobs.kept") == {"type": "test.kept"}
