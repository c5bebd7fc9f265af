"""What the Redis layer keeps per event loop: connections cannot cross loops."""

from __future__ import annotations

import asyncio
import secrets
from typing import TYPE_CHECKING

from gateway.layers.redis.cluster import ClusterNodes, ClusterShard
from gateway.layers.redis.connections import Shard
from gateway.layers.redis.durable import DurableReader
from gateway.layers.redis.liveness import Liveness
from gateway.layers.redis.receiver import Receiver

if TYPE_CHECKING:
    from gateway.layers.redis.core import RedisChannelLayer

__all__ = ["LoopState"]


class LoopState:
    """One event loop's connections to every shard, its inbox, receiver, durable reader and
    heartbeat."""

    def __init__(self, layer: RedisChannelLayer, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.nodes: ClusterNodes | None = None
        self.shards: list[Shard]
        if layer.cluster:
            self.nodes = ClusterNodes(layer.hosts, layer.unavailable_after)
            self.shards = [ClusterShard(self.nodes, tag) for tag in layer.tags]
        else:
            self.shards = [Shard(spec, layer.unavailable_after) for spec in layer.hosts]
        # The loop's own inbox: two loops of one process (a thread running async_to_sync)
        # popping one inbox would take each other's messages.
        self.inbox = f"{layer.client_prefix}.{secrets.token_hex(3)}"
        self.receiver = Receiver(layer, self.shards, loop)
        self.durable = DurableReader(layer, self.shards)
        self.liveness = Liveness(layer, len(self.shards))

    async def close(self) -> None:
        """Stop the receive tasks and close every connection of the loop."""
        await self.liveness.close()
        await self.receiver.close()
        for shard in self.shards:
            await shard.close()
        if self.nodes is not None:
            await self.nodes.close()
