"""Groups on Redis: this process's memberships, and group sends of one script call per host.

Each shard keeps the entries of the members whose channels it holds (see
`RedisChannelLayer.membership_commands`); a group send runs GROUP_SEND on every shard.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import msgpack

from gateway.exceptions import ChannelLayerUnavailable
from gateway.layers.redis.config import glob_to_lua
from gateway.layers.redis.connections import Script
from gateway.layers.redis.scripts import GROUP_SEND
from gateway.layers.redis.wire import WireConnection
from gateway.layers.serialization import copy_message
from gateway.types import Message

if TYPE_CHECKING:
    from gateway.layers.redis.core import RedisChannelLayer

__all__ = ["Groups"]

_GROUP_SEND = Script(GROUP_SEND)


class Groups:
    """The group operations of one layer, and the memberships this process holds."""

    def __init__(self, layer: RedisChannelLayer, channel_capacity: Mapping[Any, int]) -> None:
        self.layer = layer
        # This process's memberships, (group, channel) -> joined at (epoch ms): re-asserted
        # on a Redis host that comes back, with or without its data.
        self.memberships: dict[tuple[str, str], int] = {}
        self.script_args = self._script_args(channel_capacity)

    def _script_args(self, channel_capacity: Mapping[Any, int]) -> list[Any] | None:
        """Capacity globs and durable globs as Lua patterns; None when a regex needs Python."""
        pairs: list[Any] = []
        for pattern, capacity in channel_capacity.items():
            if not isinstance(pattern, str):
                return None
            pairs += [glob_to_lua(pattern), capacity]
        durable = [glob_to_lua(pattern) for pattern in self.layer.durable_patterns]
        return [len(pairs) // 2, *pairs, len(durable), *durable, self.layer.durable_capacity]

    async def add(self, group: str, channel: str) -> None:
        """Add a channel to a group; adding it again renews its membership."""
        layer = self.layer
        layer.loop_state().liveness.start()
        now_ms = int(time.time() * 1000)
        self.memberships[(group, channel)] = now_ms
        index = layer.shard_index(channel)
        commands = layer.membership_commands(group, channel, index, now_ms)

        async def add(wire: WireConnection) -> None:
            for reply in wire.execute_many(*commands):
                await reply

        await layer.call(index, add)

    async def discard(self, group: str, channel: str) -> None:
        """Remove a channel from a group, if it is in it."""
        layer = self.layer
        self.memberships.pop((group, channel), None)
        index = layer.shard_index(channel)
        # A specific channel leaves its inbox's members; group_send drops an inbox left empty.
        key, member = layer.membership_key(group, channel, index)
        await layer.call(index, lambda wire: wire.execute("ZREM", key, member))

    async def send(self, group: str, message: Message) -> None:
        """Send a message to every member of a group: one script call per host."""
        layer = self.layer
        layer.loop_state().liveness.start()
        copied, _ = copy_message(message)
        payload: bytes = msgpack.packb(copied)
        now_ms = int(time.time() * 1000)
        head = [
            now_ms - int(layer.group_expiry * 1000),
            b"%014d" % (now_ms + int(layer.expiry * 1000)),
            payload,
            layer.capacity,
            layer.expiry_seconds,
        ]
        if layer.ring.size == 1:
            await self._send_on(0, group, head)
        else:
            sends = (self._send_on(index, group, head) for index in range(layer.ring.size))
            await asyncio.gather(*sends)

    async def _send_on(self, index: int, group: str, head: list[Any]) -> int:
        layer = self.layer
        key = layer.group_key(group, index)
        tail = self.script_args
        if tail is None:
            tail = await self._explicit_capacities(index, key, head[0])
        prefix = layer.key_prefixes[index]
        args = [*head, prefix + "c:", prefix + "d:", *tail, layer.inbox_capacity]
        args.append(int(time.time() * 1000))
        keys = [key, prefix + "ready"]
        sent: int = await layer.run_script(index, _GROUP_SEND, keys, args)
        for _ in range(3):
            if sent != -1:
                break
            # The shard lost its data: the members must be back before anything is sent.
            await layer.loop_state().liveness.recover(index)
            sent = await layer.run_script(index, _GROUP_SEND, keys, args)
        if sent == -1:
            raise ChannelLayerUnavailable(f"Redis shard {index}: group memberships not restored")
        return sent

    async def _explicit_capacities(self, index: int, key: str, oldest: int) -> list[Any]:
        """With regex capacities (no Lua equivalent), name each member's capacity exactly."""
        layer = self.layer
        members: list[bytes] = await layer.call(
            index, lambda wire: wire.execute("ZRANGEBYSCORE", key, oldest, "+inf")
        )
        pairs: list[Any] = []
        for raw in members:
            member = raw.decode()
            if member.endswith("!"):
                continue  # an inbox: its channels' capacities are enforced where they are read
            capacity = layer.capacity_of(member)
            if capacity != layer.capacity:
                escaped = "".join(c if c.isalnum() else "%" + c for c in member)
                pairs += [f"^{escaped}$", capacity]
        durable = [glob_to_lua(pattern) for pattern in layer.durable_patterns]
        return [len(pairs) // 2, *pairs, len(durable), *durable, layer.durable_capacity]

    async def reassert(self, index: int, wire: WireConnection) -> int:
        """Write this process's live memberships on a host again (after it came back), and
        enter the process in the host's live set (see liveness)."""
        layer = self.layer
        now_ms = int(time.time() * 1000)
        cutoff = now_ms - int(layer.group_expiry * 1000)
        live = layer.key_prefixes[index] + "live"
        commands: list[tuple[Any, ...]] = [("ZADD", live, now_ms, layer.client_prefix)]
        restored = 0
        for (group, channel), joined in list(self.memberships.items()):
            if joined <= cutoff:
                del self.memberships[(group, channel)]
            elif layer.shard_index(channel) == index:
                commands += layer.membership_commands(group, channel, index, joined)
                restored += 1
        for reply in wire.execute_many(*commands):
            await reply
        return restored

    def clear(self) -> None:
        """Forget every membership (flush)."""
        self.memberships.clear()
