"""The receive side: one blocking pop per Redis host and event loop, fanned out to waiters.

Every `receive()` of the loop registers a waiter; one task per host runs BLMPOP over the
process's inboxes (one list per specific-name prefix, shared by all its channels), the normal
channels someone here waits for, and wake-up lists. Each pop brings up to BATCH entries,
which the connection's read callback hands straight to the waiting futures (the task only tops
the queued pops up and reconnects) or to a local buffer per channel (`fanout`).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import deque
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import msgpack
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from gateway.layers.redis.connections import (
    TRANSIENT_CANDIDATES,
    UNAVAILABLE,
    Shard,
    is_redirect,
    is_transient,
)
from gateway.layers.redis.fanout import Buffer, Fanout, Waiter
from gateway.layers.redis.wire import ReplyHandler, WireConnection, pack

if TYPE_CHECKING:
    from gateway.layers.redis.core import RedisChannelLayer

__all__ = ["Receiver", "decode_entry", "encode_entry"]

logger = logging.getLogger("gateway.layers")

BATCH = 1024
DEPTH = 8
REFILL_AT = 2


def encode_entry(expires_ms: int, channel: str, payload: bytes) -> bytes:
    """``<expires at, 14 digits><channel>\\n<payload>``, the format the scripts write too."""
    return b"%014d%s\n%s" % (expires_ms, channel.encode("ascii"), payload)


def decode_entry(entry: bytes) -> tuple[int, str, bytes]:
    """Split a list entry into (expires at ms, channel, msgpack payload)."""
    newline = entry.index(b"\n", 14)
    return int(entry[:14]), entry[14:newline].decode("ascii"), entry[newline + 1 :]


class _Pops(ReplyHandler):
    """The queued pops of one receive task on one connection: their replies are handed to
    waiters inside the connection's data_received, with no task switch in between."""

    def __init__(self, receiver: Receiver, index: int) -> None:
        self.receiver = receiver
        self.fanout = receiver.fanout
        self.index = index
        self.keys: deque[frozenset[str]] = deque()  # what each queued pop watches, in order
        self.signal: asyncio.Future[None] | None = None  # the receive task waits on it
        self.closed = False

    def watched(self) -> frozenset[str]:
        """The lists every queued pop watches."""
        keys = self.keys
        if not keys:
            return frozenset()
        first, last = keys[0], keys[-1]
        return first if first is last else frozenset.intersection(*keys)

    def reply(self, value: Any) -> None:
        if self.closed:
            return
        self.keys.popleft()
        receiver = self.receiver
        try:
            if value is not None and value[0] not in receiver.wake_set:
                receiver.dispatch(value[0], value[1])
            if time.monotonic() >= self.fanout.next_sweep:
                self.fanout.sweep()
        except Exception:
            # A malformed entry (another writer under our prefix?) must not stop the loop
            # every receiver of this process depends on.
            logger.exception("The Redis layer's receive loop skipped a bad batch")
        if len(self.keys) <= REFILL_AT:
            self._wake_task(None)
        else:
            receiver.blocking[self.index] = self.watched()

    def fail(self, error: Exception) -> None:
        if self.closed:
            return
        if is_redirect(error):
            # A cluster moved the slot (failover, resharding): pop from its new node.
            error = RedisConnectionError(f"the Redis Cluster redirected a pop: {error}")
        elif isinstance(error, ResponseError):
            self.keys.popleft()
            logger.error("A blocking pop of the Redis layer failed: %s", error)
            if len(self.keys) <= REFILL_AT:
                self._wake_task(None)
            return
        self.closed = True
        self._wake_task(error)

    def _wake_task(self, error: Exception | None) -> None:
        signal = self.signal
        if signal is not None and not signal.done():
            if error is None:
                signal.set_result(None)
            else:
                signal.set_exception(error)


class Receiver:
    """The per-host receive tasks of one event loop, and its receive()."""

    def __init__(
        self, layer: RedisChannelLayer, shards: list[Shard], loop: asyncio.AbstractEventLoop
    ) -> None:
        self.layer = layer
        self.loop = loop
        self.shards = shards
        self._pending: set[asyncio.Task[None]] = set()
        self.fanout = Fanout(layer, shards, self._background)
        count = len(shards)
        self.inboxes: list[set[str]] = [set() for _ in range(count)]
        self.normal: list[set[str]] = [set() for _ in range(count)]
        self.blocking: list[frozenset[str]] = [frozenset() for _ in range(count)]
        self.woken = [False] * count
        self.tasks: dict[int, asyncio.Task[None]] = {}
        # One wake-up list per pop that can be queued: the queued pops watch one each, in
        # turn (`_next_wake`), in front of the inboxes, so one entry in each list is what
        # wakes each queued pop once. One wake-up list per pop rather than all of them in
        # every pop: Redis registers a blocked pop on every key it watches, and a pop that
        # blocks once per message (a receiver keeping up) costs it about 0.5 us per key.
        # They carry their shard's key prefix (in a cluster, a pop watches one slot).
        base = f"w:{layer.client_prefix}.{secrets.token_hex(4)}"
        self.wake_keys = [
            [f"{prefix}{base}.{n}" for n in range(DEPTH)] for prefix in layer.key_prefixes
        ]
        self.wake_set = {key.encode() for keys in self.wake_keys for key in keys}
        self._turn = 0
        self._next_wake = [0] * count
        self._pops_cache: dict[int, tuple[list[str], list[bytes]]] = {}
        self._places: dict[str, tuple[int, str]] = {}  # channel -> (host index, list key)
        self._inboxes_by_key: dict[bytes, str] = {}

    # The receive() side.

    async def receive(self, channel: str) -> dict[str, Any]:
        """The next message of a channel: from its buffer, else from a receive task."""
        fanout = self.fanout
        buffer = fanout.buffers.get(channel)
        if buffer:
            message = fanout.take(channel, buffer)
            if message is not None:
                return message
        waiter: Waiter = self.loop.create_future()
        waiting = fanout.waiters.get(channel)
        if waiting is None:
            fanout.waiters[channel] = deque((waiter,))
        else:
            waiting.append(waiter)
        self._listen(channel)
        try:
            return await waiter
        except asyncio.CancelledError:
            surplus = fanout.abandon(channel, waiter)
            if surplus is not None:
                self._background(self._return_to_redis(channel, surplus))
            raise

    def _listen(self, channel: str) -> None:
        """Make sure the receive task of the channel's host pops the channel's list."""
        place = self._places.get(channel)
        if place is None:
            if len(self._places) > 4096:
                self._places.clear()
            layer = self.layer
            index = layer.shard_index(channel)
            place = self._places[channel] = (index, layer.list_key(channel, index))
        index, key = place
        if "!" in channel:
            self.inboxes[index].add(key)
        else:
            self.normal[index].add(channel)
        task = self.tasks.get(index)
        if task is None or task.done():
            self.tasks[index] = asyncio.create_task(self._run(index), name="redis-layer-receive")
        elif key not in self.blocking[index]:
            self._wake(index)

    def _wake(self, index: int) -> None:
        """Interrupt the blocking pop so that it starts again with the new set of lists."""
        if self.woken[index]:
            return
        self.woken[index] = True
        self._background(self._push_wake(index))

    async def _push_wake(self, index: int) -> None:
        try:
            wire = await self.shards[index].connection()
            keys = self.wake_keys[index]
            commands: list[tuple[Any, ...]] = [("RPUSH", key, b"") for key in keys]
            commands += [("EXPIRE", key, 60) for key in keys]
            for reply in wire.execute_many(*commands):
                await reply
        except UNAVAILABLE:
            pass  # the receive task is reconnecting and will pick the new set up anyway
        except ResponseError as exc:
            if not is_redirect(exc):
                raise
            self.shards[index].lost()  # the receive task follows the slot on its own

    async def _return_to_redis(self, channel: str, buffer: Buffer) -> None:
        """Push a shared channel's surplus back, for other processes' receivers."""
        layer = self.layer
        key = layer.list_key(channel)
        entries = [
            encode_entry(int(expires), channel, msgpack.packb(message))
            for expires, message in reversed(buffer)
        ]
        try:
            wire = await self.shards[layer.shard_index(channel)].connection()
            pushed, expires = wire.execute_many(
                ("LPUSH", key, *entries), ("EXPIRE", key, int(layer.expiry) + 1)
            )
            await pushed
            await expires
        except UNAVAILABLE:
            logger.warning(
                "Dropped %d buffered messages of %r: Redis is down", len(entries), channel
            )

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._pending.add(task)  # a reference, so that the task is not collected mid-way
        task.add_done_callback(self._pending.discard)

    # The receive task.

    async def _run(self, index: int) -> None:
        wire: WireConnection | None = None
        pops = _Pops(self, index)
        loop = self.loop
        try:
            while True:
                try:
                    if wire is None or wire.closed:
                        wire = await self._connect(index)
                        pops = _Pops(self, index)
                    self.woken[index] = False
                    if len(pops.keys) <= REFILL_AT:
                        self._pop_more(index, wire, pops)
                    self.blocking[index] = pops.watched()
                    # Replies are dispatched as they arrive; this task only wakes up to top
                    # the pops up, or to reconnect.
                    pops.signal = loop.create_future()
                    await pops.signal
                except UNAVAILABLE as exc:
                    self.blocking[index] = frozenset()
                    pops.closed = True  # its pops' replies went with the connection
                    if wire is not None:
                        wire.abort()
                    wire = await self._recover(index, exc)
                    pops = _Pops(self, index)
        finally:
            self.blocking[index] = frozenset()
            pops.closed = True
            if wire is not None:
                wire.close()

    def _pop_more(self, index: int, wire: WireConnection, pops: _Pops) -> None:
        """Queue pops up to DEPTH: the next one is already waiting in Redis when a message
        arrives, and one write serves several messages."""
        keys = self._keys(index)
        count = DEPTH - len(pops.keys)
        first = self._next_wake[index]
        self._next_wake[index] = (first + count) % DEPTH
        encoded = self._encoded_pops(index, keys)
        wire.write_to(b"".join([encoded[(first + n) % DEPTH] for n in range(count)]), count, pops)
        key_set = frozenset(keys)
        if pops.keys and pops.keys[-1] == key_set:
            key_set = pops.keys[-1]  # the same object: `watched` then skips an intersection
        pops.keys.extend([key_set] * count)

    def _encoded_pops(self, index: int, keys: list[str]) -> list[bytes]:
        """The pops of `keys`, one per wake-up list, encoded (kept while `keys` stay)."""
        cached = self._pops_cache.get(index)
        if cached is not None and cached[0] == keys:
            return cached[1]
        block = self.layer.block_seconds
        encoded = [
            pack(("BLMPOP", block, len(keys) + 1, wake, *keys, "LEFT", "COUNT", BATCH))
            for wake in self.wake_keys[index]
        ]
        self._pops_cache[index] = (keys, encoded)
        return encoded

    async def _connect(self, index: int) -> WireConnection:
        return await self.shards[index].open_blocking(self.layer.block_seconds)

    def _keys(self, index: int) -> list[str]:
        layer = self.layer
        normal = self.normal[index]
        waiters = self.fanout.waiters
        for channel in [channel for channel in normal if channel not in waiters]:
            normal.discard(channel)
        keys = [*self.inboxes[index], *(layer.list_key(channel) for channel in normal)]
        if len(keys) > 1:
            # BLMPOP serves the first non-empty list; rotate so that none starves the others.
            self._turn = (self._turn + 1) % len(keys)
            keys = keys[self._turn :] + keys[: self._turn]
        return keys

    async def _recover(self, index: int, exc: BaseException) -> WireConnection:
        """Wait for the host with capped exponential backoff, then re-join this process's groups."""
        layer = self.layer
        shard = self.shards[index]
        logger.warning("Redis %s unreachable (%s); receivers wait and reconnect", shard.label, exc)
        shard.lost()
        delay = layer.backoff_initial
        while True:
            await asyncio.sleep(delay)
            wire: WireConnection | None = None
            try:
                wire = await shard.open_blocking(layer.block_seconds)
                restored = await layer.reassert_memberships(index, wire)
                break
            except TRANSIENT_CANDIDATES as error:
                if not is_transient(error):
                    raise
                shard.lost()
                if wire is not None:
                    wire.abort()
                delay = min(delay * 2, layer.backoff_max)
        logger.info("Redis %s is back; re-asserted %d group memberships", shard.label, restored)
        return wire

    def dispatch(self, key: bytes, entries: list[bytes]) -> None:
        """Hand entries popped from list `key` to waiters, or to the channels' buffers."""
        now = time.time() * 1000
        unpack = msgpack.unpackb
        fanout = self.fanout
        for entry in entries:
            expires, channel, payload = decode_entry(entry)
            if expires < now:
                continue
            if channel[0] == " ":
                # A group send to channels of this inbox, named by their parts after the '!':
                # one entry, one decode.
                names = map(self._inbox_of(key).__add__, channel.split())
                fanout.deliver_many(names, unpack(payload), expires)
            else:
                fanout.deliver(channel, unpack(payload), expires)

    def _inbox_of(self, key: bytes) -> str:
        """The inbox ("specific.ab12.cd!") whose list is `key`."""
        inbox = self._inboxes_by_key.get(key)
        if inbox is None:
            text = key.decode()
            inbox = text[text.index(":c:", len(self.layer.prefix)) + 3 :]
            self._inboxes_by_key[key] = inbox
        return inbox

    # Housekeeping.

    def clear(self) -> None:
        """Drop buffered messages (flush); receivers already waiting keep waiting."""
        self.fanout.clear()

    async def close(self) -> None:
        tasks = list(self.tasks.values())
        self.tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
