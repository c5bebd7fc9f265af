"""The in-memory channel layer: one process, no set-up, the same contract as the Redis layer."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from collections.abc import Iterator, Mapping
from functools import lru_cache
from time import monotonic
from typing import Any

from gateway.exceptions import ChannelFull
from gateway.layers.base import BaseChannelLayer
from gateway.layers.serialization import copier, copy_message
from gateway.types import Message

__all__ = ["InMemoryChannelLayer"]

logger = logging.getLogger("gateway.layers")

_Waiter = asyncio.Future[dict[str, Any]]
_Queue = deque[tuple[float, dict[str, Any]]]  # (expires at, message), oldest first


class ChannelQueue:
    """What `InMemoryChannelLayer.channels` holds for a channel: its size, like a queue's."""

    def __init__(self, layer: InMemoryChannelLayer, channel: str) -> None:
        self._layer = layer
        self.channel = channel

    def qsize(self) -> int:
        """The number of messages waiting on the channel, expired ones not yet swept included."""
        return len(self._layer._queues.get(self.channel, ()))

    def empty(self) -> bool:
        """Whether no message waits on the channel."""
        return self.qsize() == 0

    def __len__(self) -> int:
        return self.qsize()


class ChannelsView(Mapping[str, ChannelQueue]):
    """The channels in use (messages queued or receivers waiting), as Channels' ``channels``.

    A live view for tests and debugging. ``del view[name]`` drops the channel's queued
    messages; receivers already waiting keep waiting, and a name with nothing queued is left
    as it is.
    """

    def __init__(self, layer: InMemoryChannelLayer) -> None:
        self._layer = layer

    def __getitem__(self, channel: str) -> ChannelQueue:
        if channel not in self._layer._queues and channel not in self._layer._waiters:
            raise KeyError(channel)
        return ChannelQueue(self._layer, channel)

    def __iter__(self) -> Iterator[str]:
        queues, waiters = self._layer._queues, self._layer._waiters
        return itertools.chain(list(queues), [name for name in waiters if name not in queues])

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __delitem__(self, channel: str) -> None:
        self._layer._queues.pop(channel, None)


class InMemoryChannelLayer(BaseChannelLayer):
    """A channel layer inside one process: per-channel queues, direct hand-off to receivers.

    A channel is a queue of messages nobody waits for yet, or a list of receivers waiting for
    a message, never both. A channel with neither holds no memory at all.
    """

    def __init__(
        self,
        expiry: float = 60,
        group_expiry: float = 86400,
        capacity: int = 100,
        channel_capacity: dict[Any, int] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            expiry=expiry,
            capacity=capacity,
            channel_capacity=channel_capacity,
            group_expiry=group_expiry,
        )
        if kwargs:
            # Lets a settings file swap a Redis CONFIG for this backend in development.
            logger.warning("The in-memory channel layer ignores CONFIG %s", sorted(kwargs))
        self._queues: dict[str, _Queue] = {}
        self._waiters: dict[str, list[_Waiter]] = {}
        # group -> {channel: membership expires at}
        self._groups: dict[str, dict[str, float]] = {}
        self._capacity_of = lru_cache(maxsize=4096)(self.get_capacity)
        self._sweep_every = min(self.expiry, self.group_expiry)
        self._next_sweep = monotonic() + self._sweep_every

    @property
    def channels(self) -> ChannelsView:
        """The channels in use, by name; ``len(layer.channels)`` is 0 once all is received."""
        return ChannelsView(self)

    @property
    def groups(self) -> dict[str, dict[str, float]]:
        """Each group's members, channel name to membership expiry (``time.monotonic()``)."""
        return self._groups

    # Channels.

    async def send(self, channel: str, message: Message) -> None:
        """Put a message on a channel; raise ChannelFull when the channel is at capacity."""
        self.require_valid_channel_name(channel)
        copied, _ = copy_message(message)
        now = monotonic()
        if now >= self._next_sweep + self._sweep_every:
            # Receives run the sweep when it is due; a send runs it only a period late (in a
            # process that only sends), so a message that just expired stays in `channels`
            # until the next receive, as in Channels.
            self._sweep(now)
        if not self._deliver(channel, copied, now):
            raise ChannelFull(f"channel {channel!r} holds its capacity of messages")

    async def receive(self, channel: str) -> dict[str, Any]:
        """Wait for the next message on a channel and return it; expired ones are dropped."""
        waiter: _Waiter = asyncio.get_running_loop().create_future()
        self.receive_into(channel, waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            self.forget_receiver(channel, waiter)
            raise

    def receive_into(self, channel: str, future: asyncio.Future[Any]) -> None:
        """Resolve `future` (of the running loop) with the next message on a channel.

        At once when one is queued, else when one is sent. For a receiver that waits on more
        than the layer with one future of its own (a consumer's dispatch loop): it may resolve
        the future itself first, and then calls `forget_receiver`; a message finds it done
        and goes to the next receiver, or stays queued.
        """
        self.require_valid_channel_name(channel)
        if future.done():
            return  # resolved by its owner already: nothing taken, nothing to wait for
        now = monotonic()
        if now >= self._next_sweep:
            self._sweep(now)
        queue = self._queues.get(channel)
        if queue is not None:
            message = self._take(channel, queue, now)
            if message is not None:
                future.set_result(message)
                return
        waiting = self._waiters.get(channel)
        if waiting is None:
            self._waiters[channel] = [future]
        else:
            waiting.append(future)

    def forget_receiver(self, channel: str, future: asyncio.Future[Any]) -> None:
        """No more messages for `future` (given to `receive_into`); one it holds is put back."""
        if future.done() and not future.cancelled() and future.result() is not None:
            self._put_back(channel, future.result())  # handed over, never taken: not lost
            return
        waiting = self._waiters.get(channel)
        if waiting is not None and future in waiting:
            waiting.remove(future)
            if not waiting:
                del self._waiters[channel]

    def _take(self, channel: str, queue: _Queue, now: float) -> dict[str, Any] | None:
        """Pop the oldest unexpired message, dropping the expired ones before it."""
        message = None
        while queue:
            expires, candidate = queue.popleft()
            if expires >= now:
                message = candidate
                break
        if not queue:
            del self._queues[channel]
        return message

    def _deliver(self, channel: str, message: dict[str, Any], now: float) -> bool:
        """Hand a message to a waiting receiver or queue it; False when the channel is full."""
        waiting = self._waiters.get(channel)
        if waiting is not None and self._hand_off(channel, waiting, message):
            return True
        queue = self._queues.get(channel)
        if queue is None:
            queue = self._queues[channel] = deque()
        elif len(queue) >= self._capacity_of(channel):
            return False
        queue.append((now + self.expiry, message))
        return True

    def _hand_off(self, channel: str, waiting: list[_Waiter], message: dict[str, Any]) -> bool:
        """Give the message to the first live waiter; False when none is left."""
        loop = asyncio.get_running_loop()
        delivered = False
        while waiting and not delivered:
            waiter = waiting.pop(0)
            if waiter.done():
                continue
            if waiter.get_loop() is loop:
                waiter.set_result(message)
                delivered = True
                continue
            try:
                # A receiver on another thread's loop: resolve it there, where a cancellation
                # that wins the race puts the message back instead of losing it.
                waiter.get_loop().call_soon_threadsafe(self._resolve, channel, waiter, message)
                delivered = True
            except RuntimeError:  # that loop is closed: its receiver is gone
                pass
        if not waiting:
            del self._waiters[channel]
        return delivered

    def _resolve(self, channel: str, waiter: _Waiter, message: dict[str, Any]) -> None:
        if waiter.done():
            self._put_back(channel, message)
        else:
            waiter.set_result(message)

    def _put_back(self, channel: str, message: dict[str, Any]) -> None:
        """Return a message to the head of its channel, past capacity: it was accepted already."""
        waiting = self._waiters.get(channel)
        if waiting is None or not self._hand_off(channel, waiting, message):
            queue = self._queues.setdefault(channel, deque())
            queue.appendleft((monotonic() + self.expiry, message))

    # Groups.

    async def group_add(self, group: str, channel: str) -> None:
        """Add a channel to a group; adding it again renews its membership."""
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        self._groups.setdefault(group, {})[channel] = monotonic() + self.group_expiry

    async def group_discard(self, group: str, channel: str) -> None:
        """Remove a channel from a group, if it is in it."""
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        members = self._groups.get(group)
        if members is not None:
            members.pop(channel, None)
            if not members:
                del self._groups[group]

    async def group_send(self, group: str, message: Message) -> None:
        """Send a message to every channel of a group; full channels are skipped."""
        self.require_valid_group_name(group)
        checked, nested = copy_message(message)
        members = self._groups.get(group)
        if not members:
            return
        now = monotonic()
        if now >= self._next_sweep:
            self._sweep(now)
        loop = asyncio.get_running_loop()
        all_waiting = self._waiters
        copy = copier(checked, nested)
        expired: list[str] = []
        for channel, until in members.items():
            if until < now:
                expired.append(channel)
                continue
            payload = copy()  # every member gets its own
            waiting = all_waiting.get(channel)
            if waiting is not None and len(waiting) == 1:
                # The common case inlined: one receiver on this loop waits for this channel.
                waiter = waiting[0]
                if waiter.get_loop() is loop and not waiter.done():
                    del all_waiting[channel]
                    waiter.set_result(payload)
                    continue
            if not self._deliver(channel, payload, now):
                logger.debug("group_send to %r skipped full channel %r", group, channel)
        if expired:
            self._drop_members(group, members, expired)

    def _drop_members(self, group: str, members: dict[str, float], expired: list[str]) -> None:
        for channel in expired:
            del members[channel]
        if not members:
            self._groups.pop(group, None)

    # Housekeeping.

    async def flush(self) -> None:
        """Drop every message and group; receivers already waiting keep waiting."""
        self._queues.clear()
        self._groups.clear()

    async def close(self) -> None:
        """Nothing to release: the in-memory layer holds no connections."""

    def _sweep(self, now: float) -> None:
        """Drop expired messages and memberships, and receivers of closed loops; once per expiry."""
        self._next_sweep = now + self._sweep_every
        for channel, queue in list(self._queues.items()):
            while queue and queue[0][0] < now:
                queue.popleft()
            if not queue:
                del self._queues[channel]
        for channel, waiting in list(self._waiters.items()):
            if all(waiter.done() or waiter.get_loop().is_closed() for waiter in waiting):
                del self._waiters[channel]
        for group, members in list(self._groups.items()):
            for channel in [channel for channel, until in members.items() if until < now]:
                del members[channel]
            if not members:
                del self._groups[group]
