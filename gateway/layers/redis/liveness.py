"""Which processes use a shard, and memberships back before any group send after data loss.

Every process using groups beats on every shard (`HEARTBEAT`): its name goes into the shard's
set of live processes, and it learns the others'. Each shard holds a marker key; a Redis that
restarted without persistence (or was flushed) has none, so `GROUP_SEND` refuses to run on it
and answers -1. Whoever sees that first, a sender or a heartbeat, recovers the shard: it
re-asserts its own memberships, waits until every process it saw alive before has re-asserted
its own (each notices on its next heartbeat) or has been silent for `heartbeat_expiry`, and
only then writes the marker. So no group send is accepted by a shard whose members are not
back, instead of reaching nobody.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from gateway.exceptions import ChannelLayerUnavailable
from gateway.layers.redis.connections import TRANSIENT_CANDIDATES, Script, is_transient
from gateway.layers.redis.scripts import HEARTBEAT
from gateway.layers.redis.wire import WireConnection

if TYPE_CHECKING:
    from gateway.layers.redis.core import RedisChannelLayer

__all__ = ["Liveness"]

logger = logging.getLogger("gateway.layers")

_HEARTBEAT = Script(HEARTBEAT)
_POLL = 0.02  # seconds between looks at the live set while peers re-assert


class Liveness:
    """One event loop's heartbeat on every shard, and the recovery of a shard that lost data."""

    def __init__(self, layer: RedisChannelLayer, shards: int) -> None:
        self.layer = layer
        self.name = layer.client_prefix
        # Per shard: the other processes alive at this process's last heartbeat.
        self.peers: list[frozenset[str]] = [frozenset()] * shards
        self.recoveries = 0  # shards recovered after a data loss, for logs and tests
        # Per shard: whether this loop saw its marker (else a missing one is a first use).
        self.known = [False] * shards
        self._task: asyncio.Task[None] | None = None
        self._recovering: dict[int, asyncio.Future[None]] = {}

    def start(self) -> None:
        """Beat from now on (groups in use); idempotent."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._beat_forever())

    async def _beat_forever(self) -> None:
        while True:
            for index in range(len(self.peers)):
                try:
                    await self.beat(index)
                except ChannelLayerUnavailable as exc:
                    logger.debug("heartbeat on shard %d failed: %s", index, exc)
                except TRANSIENT_CANDIDATES as exc:
                    if not is_transient(exc):
                        raise
            await asyncio.sleep(self.layer.heartbeat)

    async def beat(self, index: int) -> None:
        """One heartbeat on a shard; recover it when its marker is gone."""
        layer = self.layer
        now = int(time.time() * 1000)
        expiry = int(layer.heartbeat_expiry * 1000)
        args = [self.name, now, now - expiry, 2 * expiry]
        reply = await layer.run_script(index, _HEARTBEAT, self.keys(index), args)
        if reply == -1:
            await self.recover(index)
        else:
            self.peers[index] = frozenset(name.decode() for name in reply) - {self.name}
            self.known[index] = True

    def keys(self, index: int) -> list[str]:
        """The shard's live set and marker."""
        prefix = self.layer.key_prefixes[index]
        return [prefix + "live", prefix + "ready"]

    async def recover(self, index: int) -> None:
        """Make the shard whole again (once, however many callers wait for it)."""
        running = self._recovering.get(index)
        if running is None or running.done():
            running = self._recovering[index] = asyncio.ensure_future(self._recover(index))
        await asyncio.shield(running)

    async def _recover(self, index: int) -> None:
        layer = self.layer
        started = time.monotonic()
        expected = self.peers[index]
        live_key, marker = self.keys(index)
        restored = await layer.call(index, lambda wire: layer.reassert_memberships(index, wire))
        while True:
            live, marked = await layer.call(index, lambda wire: self._look(wire, live_key, marker))
            if marked:
                break
            others = live - {self.name}
            missing = expected - live
            waited = time.monotonic() - started
            if (not missing and (expected or not others)) or waited >= layer.heartbeat_expiry:
                await layer.call(index, lambda wire: wire.execute("SET", marker, self.name))
                break
            await asyncio.sleep(_POLL)
        self.recoveries += 1
        lost, self.known[index] = self.known[index], True
        logger.log(
            logging.WARNING if lost else logging.INFO,
            "Redis shard %d %s: re-asserted %d group memberships; %d of %d"
            " processes seen before came back within %.2fs%s",
            index,
            "had lost its data" if lost else "is new or was emptied (no marker yet)",
            restored,
            len(expected & live),
            len(expected),
            time.monotonic() - started,
            f" (gone: {sorted(expected - live)})" if expected - live else "",
        )

    @staticmethod
    async def _look(wire: WireConnection, live_key: str, marker: str) -> tuple[set[str], bool]:
        members, exists = wire.execute_many(("ZRANGE", live_key, 0, -1), ("EXISTS", marker))
        names: Any = await members
        return {name.decode() for name in names}, bool(await exists)

    async def close(self) -> None:
        """Stop beating."""
        for task in [self._task, *self._recovering.values()]:
            if task is not None and not task.done():
                task.cancel()
        self._task = None
        self._recovering.clear()
