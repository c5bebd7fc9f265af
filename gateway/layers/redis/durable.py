"""Durable channels: a Redis stream with one consumer group, acknowledged after handling.

A message stays pending in the group from delivery until `Delivery.ack()`. A worker that dies
with messages pending leaves them idle; the next receive on the channel, in any process,
claims entries idle longer than `claim_after` with XAUTOCLAIM and gets them again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgpack
from redis.exceptions import ResponseError

from gateway.layers.redis.connections import TRANSIENT_CANDIDATES, Shard, is_transient

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from gateway.layers.redis.core import RedisChannelLayer

__all__ = ["GROUP", "Delivery", "DurableReader"]

logger = logging.getLogger("gateway.layers")

GROUP = "gateway"


@dataclass
class Delivery:
    """A received message and the means to acknowledge it once it has been handled."""

    channel: str
    message: dict[str, Any]
    entry_id: bytes | None = None
    _reader: DurableReader | None = field(default=None, repr=False)
    acked: bool = False

    async def ack(self) -> None:
        """Mark the message handled: it will not be delivered again. Idempotent."""
        if self.acked:
            return
        self.acked = True
        if self._reader is not None and self.entry_id is not None:
            await self._reader.ack(self.channel, self.entry_id)


class DurableReader:
    """Reads durable channels of one event loop (one blocking client per waiting receive)."""

    def __init__(self, layer: RedisChannelLayer, shards: list[Shard]) -> None:
        self.layer = layer
        self.shards = shards
        self.consumer = f"{socket.gethostname()}.{os.getpid()}.{layer.client_prefix}"
        self._groups: set[tuple[int, str]] = set()

    async def receive(self, channel: str) -> Delivery:
        layer = self.layer
        index = layer.shard_index(channel)
        shard = self.shards[index]
        key = layer.stream_key(channel)
        client: Redis | None = None
        delay = layer.backoff_initial
        try:
            while True:
                try:
                    if client is None:
                        client = await shard.blocking_client(layer.block_seconds)
                    delivery = await self._read_once(index, channel, key, client)
                except TRANSIENT_CANDIDATES as exc:
                    if isinstance(exc, ResponseError) and "NOGROUP" in str(exc):
                        self._groups.discard((index, key))  # Redis lost it (restarted empty)
                        continue
                    if not is_transient(exc):
                        raise
                    logger.warning(
                        "Redis %s unreachable (%s); durable receive waits", shard.label, exc
                    )
                    shard.lost()  # in a cluster the slot may have moved: a client of the new node
                    if client is not None:
                        await client.aclose()
                        client = None
                    self._groups.discard((index, key))
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, layer.backoff_max)
                    continue
                delay = layer.backoff_initial
                if delivery is not None:
                    return delivery
        finally:
            if client is not None:
                await client.aclose()

    async def _read_once(
        self, index: int, channel: str, key: str, client: Redis
    ) -> Delivery | None:
        command = await self.shards[index].command_client()
        if (index, key) not in self._groups:
            await self._create_group(command, key)
            self._groups.add((index, key))
        claim_ms = int(self.layer.claim_after * 1000)
        claimed = await command.xautoclaim(key, GROUP, self.consumer, claim_ms, "0-0", count=1)
        for entry_id, fields in claimed[1]:
            if fields:
                logger.info("Claimed message %s of durable channel %r", entry_id, channel)
                return self._delivery(channel, entry_id, fields)
        block_ms = int(min(self.layer.block_seconds, self.layer.claim_after) * 1000) or 1
        reply: Any = await client.xreadgroup(
            GROUP, self.consumer, {key: ">"}, count=1, block=block_ms
        )
        for _stream, entries in reply or ():
            for entry_id, fields in entries:
                if fields:
                    return self._delivery(channel, entry_id, fields)
        return None

    async def _create_group(self, client: Redis, key: str) -> None:
        try:
            # From the start of the stream: messages sent before any worker ran are kept.
            await client.xgroup_create(key, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def _delivery(self, channel: str, entry_id: bytes, fields: dict[bytes, bytes]) -> Delivery:
        message: dict[str, Any] = msgpack.unpackb(fields[b"m"])
        return Delivery(channel, message, entry_id, self)

    async def ack(self, channel: str, entry_id: bytes) -> None:
        layer = self.layer
        key = layer.stream_key(channel)
        index = layer.shard_index(channel)

        async def acknowledge(_wire: object) -> None:
            client = await self.shards[index].command_client()
            async with client.pipeline(transaction=False) as pipe:
                pipe.xack(key, GROUP, entry_id)
                pipe.xdel(key, entry_id)  # the stream's length is then what is left to handle
                await pipe.execute()

        # Through the layer's bounded retry, which follows a cluster's slot when it moves.
        await layer.call(index, acknowledge)
