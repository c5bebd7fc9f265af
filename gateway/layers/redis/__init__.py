"""The Redis channel layer (needs the `redis` extra: redis-py and msgpack)."""

from __future__ import annotations

from gateway.layers.redis.core import RedisChannelLayer
from gateway.layers.redis.durable import Delivery

__all__ = ["Delivery", "RedisChannelLayer"]
