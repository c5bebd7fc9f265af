"""The Redis layer's health probe: one PING per shard, against real servers."""

from __future__ import annotations

import asyncio
import re

import pytest

from gateway.exceptions import ChannelLayerUnavailable
from gateway.layer_health import LayerProbe
from gateway.layers.redis import RedisChannelLayer
from gateway.layers.redis.probe import ping_shards
from tests.integration.redis import RedisCluster, RedisServer, running_redis
from tests.layers.conftest import redis_layer_config

pytestmark = pytest.mark.integration


async def test_ping_fails_while_redis_is_down_and_answers_after(
    own_redis_server: RedisServer,
) -> None:
    layer = RedisChannelLayer(**redis_layer_config(own_redis_server.url, unavailable_after=0.5))
    try:
        await ping_shards(layer)
        await asyncio.to_thread(own_redis_server.stop)
        with pytest.raises(ChannelLayerUnavailable):
            await ping_shards(layer)
        await asyncio.to_thread(own_redis_server.start)
        await ping_shards(layer)
    finally:
        await layer.close()


async def test_one_host_of_several_down_makes_the_probe_degraded() -> None:
    with running_redis() as first, running_redis() as second:
        layer = RedisChannelLayer(**redis_layer_config(first.url, second.url))
        probe = LayerProbe(layer, timeout=0.5)
        try:
            await probe.check()
            assert probe.report()["status"] == "ok"
            await asyncio.to_thread(second.stop)
            await probe.check()
            report = probe.report()
            assert report["status"] == "degraded"
            assert report["detail"].startswith("unreachable (0s): ")
            await asyncio.to_thread(second.start)
            await probe.check()
            assert probe.report() == {
                "backend": "gateway.layers.redis.core.RedisChannelLayer",
                "status": "ok",
                "detail": "reachable",
            }
        finally:
            await layer.close()


def pings(server: RedisServer) -> int:
    found = re.search(rb"cmdstat_ping:calls=(\d+)", server.command("INFO commandstats"))
    return int(found.group(1)) if found else 0


async def test_every_shard_of_a_cluster_is_pinged(redis_cluster: RedisCluster) -> None:
    layer = RedisChannelLayer(**redis_layer_config(redis_cluster.urls[0], cluster=True))
    probe = LayerProbe(layer)
    before = [pings(node) for node in redis_cluster.nodes]
    try:
        await probe.check()
        assert probe.report()["status"] == "ok"
    finally:
        await layer.close()
    # The layer's hash tags are spread over every master: each one answered a PING.
    assert all(pings(node) > count for node, count in zip(redis_cluster.nodes, before, strict=True))
