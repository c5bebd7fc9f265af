"""The Redis layer's part of health: one PING per shard, on the connections sends use."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.layers.redis.core import RedisChannelLayer
    from gateway.layers.redis.wire import WireConnection

__all__ = ["ping_shards"]


async def _ping(wire: WireConnection) -> Any:
    return await wire.execute("PING")


async def ping_shards(layer: RedisChannelLayer) -> None:
    """PING every shard; raise (ChannelLayerUnavailable, OSError, ...) when one cannot answer.

    The PING goes through `layer.call`, so a broken connection is opened again as a send
    would open it, and a Redis that came back is seen on the next probe.
    """
    await asyncio.gather(*(layer.call(index, _ping) for index in range(layer.ring.size)))
