"""The fan-out of popped messages to one event loop's receives: waiters first, else buffers.

A message for a channel nobody here waits for yet is kept in a local buffer per channel until
its expiry. A specific channel's buffer is bounded by its capacity, and a full one is named in
its inbox's set of full channels, which the send scripts check.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any

from gateway.layers.redis.connections import UNAVAILABLE, Shard
from gateway.layers.serialization import copier

if TYPE_CHECKING:
    from gateway.layers.redis.core import RedisChannelLayer

__all__ = ["Buffer", "Fanout", "Waiter"]

logger = logging.getLogger("gateway.layers")

_CONTAINERS = (dict, list)
Waiter = asyncio.Future[dict[str, Any]]
Buffer = deque[tuple[float, dict[str, Any]]]  # (expires at, epoch ms; message)


class Fanout:
    """The waiters and the buffered messages of one event loop's channels."""

    def __init__(
        self,
        layer: RedisChannelLayer,
        shards: list[Shard],
        background: Callable[[Coroutine[Any, Any, None]], None],
    ) -> None:
        self.layer = layer
        self.shards = shards
        self.waiters: dict[str, deque[Waiter]] = {}
        self.buffers: dict[str, Buffer] = {}
        self.full: set[str] = set()  # specific channels whose buffer is at capacity
        self.next_sweep = time.monotonic() + layer.expiry
        self._background = background

    # Messages popped for this loop.

    def deliver(self, channel: str, message: dict[str, Any], expires: float) -> None:
        """Hand a message to a waiting receive, else buffer it (`expires`: epoch ms)."""
        if self._hand_to_waiter(channel, message):
            return
        buffer = self.buffers.get(channel)
        if buffer is None:
            buffer = self.buffers[channel] = deque()
        elif "!" in channel and len(buffer) >= self.layer.capacity_of(channel):
            # Specific channels are buffered here, and their capacity bounds the buffer.
            logger.warning("Channel %r is full; dropped a message", channel)
            return
        buffer.append((expires, message))
        if "!" in channel and len(buffer) >= self.layer.capacity_of(channel):
            self._mark_full(channel, True)

    def deliver_many(
        self, channels: Iterable[str], message: dict[str, Any], expires: float
    ) -> None:
        """Deliver one message to several channels, each its own copy."""
        nested = any(type(value) in _CONTAINERS for value in message.values())
        copy = copier(message, nested)  # each receiver gets its own copy
        waiters = self.waiters
        take = waiters.pop
        for channel in channels:
            waiting = take(channel, None)
            if waiting is not None:
                if len(waiting) == 1 and not (waiter := waiting[0]).done():
                    # The common case inlined: one receive() waits on this channel.
                    waiter.set_result(copy())
                    continue
                waiters[channel] = waiting  # `deliver` sorts the rest out
            self.deliver(channel, copy(), expires)

    def _hand_to_waiter(self, channel: str, message: dict[str, Any]) -> bool:
        waiting = self.waiters.get(channel)
        if waiting is None:
            return False
        delivered = False
        while waiting:
            waiter = waiting.popleft()
            if not waiter.done():
                waiter.set_result(message)
                delivered = True
                break
        if not waiting:
            del self.waiters[channel]
        return delivered

    # The receive() side.

    def take(self, channel: str, buffer: Buffer) -> dict[str, Any] | None:
        """The oldest unexpired message of a channel's buffer, or None."""
        now = time.time() * 1000
        message = None
        while buffer:
            expires, candidate = buffer.popleft()
            if expires >= now:
                message = candidate
                break
        if not buffer:
            del self.buffers[channel]
        if channel in self.full and len(buffer) < self.layer.capacity_of(channel):
            self._mark_full(channel, False)
        return message

    def abandon(self, channel: str, waiter: Waiter) -> Buffer | None:
        """A receive was cancelled: keep a message already handed to it, forget the waiter.

        Returns the buffer of a shared channel nobody here receives from any more: its
        surplus goes back to Redis, so that other processes' receivers get it."""
        if waiter.done() and not waiter.cancelled():
            self._put_back(channel, waiter.result())
        else:
            waiting = self.waiters.get(channel)
            if waiting is not None:
                with contextlib.suppress(ValueError):
                    waiting.remove(waiter)
                if not waiting:
                    del self.waiters[channel]
        if "!" not in channel and channel not in self.waiters and channel in self.buffers:
            return self.buffers.pop(channel)
        return None

    def _put_back(self, channel: str, message: dict[str, Any]) -> None:
        expires = time.time() * 1000 + self.layer.expiry * 1000
        if not self._hand_to_waiter(channel, message):
            self.buffers.setdefault(channel, deque()).appendleft((expires, message))

    # Capacity and expiry.

    def _mark_full(self, channel: str, full: bool) -> None:
        """Tell senders (through the inbox's set of full channels) to stop, or to go on."""
        if full == (channel in self.full):
            return
        if full:
            self.full.add(channel)
        else:
            self.full.discard(channel)
        self._background(self._write_full(channel, full))

    async def _write_full(self, channel: str, full: bool) -> None:
        layer = self.layer
        key = layer.list_key(channel) + "#"
        part = channel[channel.index("!") + 1 :]  # the set names channels of its inbox by this
        try:
            wire = await self.shards[layer.shard_index(channel)].connection()
            if full:
                for reply in wire.execute_many(
                    ("SADD", key, part), ("EXPIRE", key, layer.expiry_seconds)
                ):
                    await reply
            else:
                await wire.execute("SREM", key, part)
        except UNAVAILABLE:
            pass  # a Redis that is gone forgot the set anyway

    def sweep(self) -> None:
        """Drop expired buffered messages, once per expiry period."""
        self.next_sweep = time.monotonic() + self.layer.expiry
        now = time.time() * 1000
        for channel, buffer in list(self.buffers.items()):
            while buffer and buffer[0][0] < now:
                buffer.popleft()
            if not buffer:
                del self.buffers[channel]
        for channel in [name for name in self.full if name not in self.buffers]:
            self._mark_full(channel, False)

    def clear(self) -> None:
        """Drop buffered messages (flush); receivers already waiting keep waiting."""
        self.buffers.clear()
        self.full.clear()
