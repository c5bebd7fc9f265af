"""`RedisChannelLayer`: the Channels layer API over one or more Redis hosts."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar

import msgpack
from redis.exceptions import ResponseError

from gateway.exceptions import ChannelFull, ChannelLayerUnavailable, ImproperlyConfiguredGateway
from gateway.layers.base import BaseChannelLayer
from gateway.layers.names import token_hex
from gateway.layers.redis.cluster import check_cluster_config, cluster_tags
from gateway.layers.redis.config import HashRing, compile_globs, parse_hosts
from gateway.layers.redis.connections import (
    TRANSIENT_CANDIDATES,
    UNAVAILABLE,
    Script,
    Shard,
    drop_keys,
    is_noscript,
    is_redirect,
    is_transient,
)
from gateway.layers.redis.durable import Delivery
from gateway.layers.redis.groups import Groups
from gateway.layers.redis.loop_state import LoopState
from gateway.layers.redis.scripts import DURABLE_SEND, SEND
from gateway.layers.redis.sending import Plans
from gateway.layers.redis.wire import WireConnection
from gateway.layers.serialization import copy_message
from gateway.types import Message

__all__ = ["RedisChannelLayer"]

logger = logging.getLogger("gateway.layers")

T = TypeVar("T")

_SEND, _DURABLE_SEND = Script(SEND), Script(DURABLE_SEND)


class RedisChannelLayer(BaseChannelLayer):
    """A channel layer on Redis: many processes and hosts, one script call per send.

    CONFIG is Channels' (`hosts`, `prefix`, `expiry`, `group_expiry`, `capacity`,
    `channel_capacity`) plus `durable` (globs of channels kept in streams until acknowledged),
    `unavailable_after` (seconds `send` waits for a missing Redis before raising
    ChannelLayerUnavailable), `backoff_initial`/`backoff_max` (reconnect backoff of receivers),
    `durable_capacity` (messages a durable channel's stream holds: a job queue's backlog,
    default 100000), `claim_after` (seconds before another worker takes over an
    unacknowledged durable message),
    `heartbeat`/`heartbeat_expiry` (seconds between a process's heartbeats, and of silence
    after which it counts as gone: after a Redis lost its data, group sends wait up to that
    long for the processes seen before to re-assert their memberships),
    `block_seconds` (how long one blocking pop lasts), `inbox_capacity` (entries a
    process's inbox holds before group sends skip it: a process that stopped popping), and
    `cluster` (the hosts are start-up nodes of one Redis Cluster) with `cluster_shards` (hash
    tags the layer spreads its keys over there).
    """

    def __init__(
        self,
        hosts: Iterable[Any] | None = None,
        prefix: str = "asgi",
        expiry: float = 60,
        group_expiry: float = 86400,
        capacity: int = 100,
        channel_capacity: Mapping[Any, int] | None = None,
        durable: Iterable[str] = (),
        durable_capacity: int = 100_000,
        unavailable_after: float = 5.0,
        backoff_initial: float = 0.1,
        backoff_max: float = 5.0,
        claim_after: float = 30.0,
        block_seconds: float = 5.0,
        inbox_capacity: int = 10_000,
        cluster: bool = False,
        cluster_shards: int = 16,
        heartbeat: float = 1.0,
        heartbeat_expiry: float = 5.0,
        **ignored: Any,
    ) -> None:
        super().__init__(
            expiry=expiry,
            capacity=capacity,
            channel_capacity=channel_capacity,
            group_expiry=group_expiry,
        )
        if ignored:
            # channels_redis options with no meaning here (symmetric_encryption_keys etc.).
            logger.warning("The Redis channel layer ignores CONFIG %s", sorted(ignored))
        if not isinstance(prefix, str) or not prefix:
            raise ImproperlyConfiguredGateway(
                f"channel layer CONFIG prefix must be a non-empty str, got {prefix!r}"
            )
        self.hosts = parse_hosts(hosts)
        self.cluster = bool(cluster)
        self.prefix = prefix
        if self.cluster:
            check_cluster_config(self.hosts, prefix, cluster_shards)
            # Each shard is one hash tag, so that every script touches a single slot.
            self.tags = cluster_tags(cluster_shards)
            self.ring = HashRing([f"cluster:{tag}" for tag in self.tags])
            self.key_prefixes = [f"{prefix}:{{{tag}}}:" for tag in self.tags]
        else:
            self.tags = []
            self.ring = HashRing([spec.label for spec in self.hosts])
            self.key_prefixes = [f"{prefix}:"] * self.ring.size
        self.unavailable_after = unavailable_after
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.claim_after = claim_after
        self.block_seconds = block_seconds
        self.inbox_capacity = inbox_capacity
        if not 0 < heartbeat < heartbeat_expiry:
            raise ImproperlyConfiguredGateway(
                "channel layer CONFIG heartbeat must be positive and below heartbeat_expiry,"
                f" got {heartbeat!r} and {heartbeat_expiry!r}"
            )
        self.heartbeat, self.heartbeat_expiry = heartbeat, heartbeat_expiry
        self.durable_patterns = list(durable)
        if isinstance(durable_capacity, bool) or not isinstance(durable_capacity, int):
            raise ImproperlyConfiguredGateway(
                f"channel layer CONFIG durable_capacity must be an int, got {durable_capacity!r}"
            )
        self.durable_capacity = durable_capacity
        self._durable = compile_globs(self.durable_patterns)
        self.expiry_seconds = max(1, int(expiry + 0.999))
        self._capacity_cache: dict[str, int] = {}
        self._expiry_ms = int(expiry * 1000)
        self._plans = Plans(self, _SEND)  # per channel used: see `sending`
        self._groups = Groups(self, channel_capacity or {})
        self._states: dict[asyncio.AbstractEventLoop, LoopState] = {}
        self._last_state: LoopState | None = None  # the state loop_state() found last

    # Names and places. Every key starts with its shard's prefix: "asgi:" on plain hosts,
    # "asgi:{tag}:" in a cluster, where the tag pins the shard's keys to one slot.

    def list_key(self, channel: str, index: int | None = None) -> str:
        """The list holding a channel: specific channels share their process's inbox.

        `index` is the channel's shard when the caller already has it."""
        bang = channel.find("!")
        prefix = self.key_prefixes[self.shard_index(channel) if index is None else index]
        return prefix + "c:" + (channel if bang < 0 else channel[: bang + 1])

    def stream_key(self, channel: str, index: int | None = None) -> str:
        """The stream holding a durable channel (`index`: its shard, when known)."""
        prefix = self.key_prefixes[self.shard_index(channel) if index is None else index]
        return prefix + "d:" + channel

    def group_key(self, group: str, index: int) -> str:
        """The sorted set of a group's targets on one shard: the inboxes holding members, and
        the normal channels that are members (each shard holds its own)."""
        return f"{self.key_prefixes[index]}g:{group}"

    def membership_commands(
        self, group: str, channel: str, index: int, joined: int
    ) -> list[tuple[Any, ...]]:
        """The writes that make `channel` a member of `group` since `joined` (ms).

        A specific channel is entered in its inbox's sorted set of members (by the part of its
        name after the '!'), and the inbox in the group's set of targets, scored with its
        latest membership; a normal channel is a target itself."""
        key = self.group_key(group, index)
        expiry = max(1, int(self.group_expiry + 0.999))
        if "!" not in channel:
            return [("ZADD", key, joined, channel), ("EXPIRE", key, expiry)]
        members, member = self.membership_key(group, channel, index)
        return [
            ("ZADD", members, joined, member),
            ("EXPIRE", members, expiry),
            ("ZADD", key, "GT", joined, self.non_local_name(channel)),
            ("EXPIRE", key, expiry),
        ]

    def membership_key(self, group: str, channel: str, index: int) -> tuple[str, str]:
        """Where `channel`'s membership of `group` is kept: (sorted set, member).

        A specific channel is the part of its name after the '!' in its inbox's set of
        members; a normal channel is itself in the group's set."""
        key = self.group_key(group, index)
        bang = channel.find("!")
        if bang < 0:
            return key, channel
        return f"{key}:{channel[: bang + 1]}", channel[bang + 1 :]

    def shard_index(self, channel: str) -> int:
        """The shard of a channel; a group keeps each member's entry on that member's shard."""
        if self.ring.size == 1:
            return 0
        return self.ring.shard_of(self.non_local_name(channel))

    def is_durable(self, channel: str) -> bool:
        """True when the channel matches a `durable` pattern."""
        return any(pattern.match(channel) for pattern in self._durable)

    def get_capacity(self, channel: str) -> int:
        """A channel_capacity pattern's, else durable_capacity (durable) or capacity."""
        for pattern, capacity in self.channel_capacity:
            if pattern.match(channel):
                return capacity
        return self.durable_capacity if self.is_durable(channel) else self.capacity

    def capacity_of(self, channel: str) -> int:
        """get_capacity, cached."""
        capacity = self._capacity_cache.get(channel)
        if capacity is None:
            if len(self._capacity_cache) > 4096:
                self._capacity_cache.clear()
            capacity = self._capacity_cache[channel] = self.get_capacity(channel)
        return capacity

    def new_channel_name(self, prefix: str = "specific") -> str:
        """A specific channel of the running loop's inbox (of the process's, outside a loop)."""
        try:
            inbox = self.loop_state().inbox
        except RuntimeError:
            return super().new_channel_name(prefix)
        return f"{prefix}.{inbox}!{token_hex(8)}"

    # Per event loop state.

    def loop_state(self) -> LoopState:
        # The running loop's state, found without asyncio.get_running_loop() (a getpid()
        # system call on Python 3.11, twice per message otherwise): while a loop runs, its
        # thread's asyncgen hooks are the loop's own methods (asyncio and uvloop alike).
        last = self._last_state
        if last is not None and last.loop is getattr(
            sys.get_asyncgen_hooks().firstiter, "__self__", None
        ):
            return last
        loop = asyncio.get_running_loop()
        state = self._states.get(loop)
        if state is None:
            for other in [other for other in self._states if other.is_closed()]:
                del self._states[other]  # its sockets died with it
            state = self._states[loop] = LoopState(self, loop)
        self._last_state = state
        return state

    async def call(self, index: int, operation: Callable[[WireConnection], Awaitable[T]]) -> T:
        """Run one operation on a host, retrying while it is unreachable, up to the bound."""
        shard = self.loop_state().shards[index]
        try:
            return await operation(await shard.connection())
        except TRANSIENT_CANDIDATES as exc:
            if not is_transient(exc):
                raise
            shard.lost()
            first_error: BaseException = exc
        deadline = time.monotonic() + self.unavailable_after
        delay = self.backoff_initial
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ChannelLayerUnavailable(
                    f"Redis {shard.label} unreachable for {self.unavailable_after:g}s:"
                    f" {first_error}"
                ) from first_error
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, self.backoff_max)
            try:
                async with asyncio.timeout(max(deadline - time.monotonic(), 0.001)):
                    return await operation(await shard.connection())
            except TRANSIENT_CANDIDATES as exc:
                if not is_transient(exc):
                    raise
                shard.lost()

    # The layer API.

    async def send(self, channel: str, message: Message) -> None:
        """Put a message on a channel; raise ChannelFull when the channel is at capacity."""
        plan = self._plans.get(channel) if type(channel) is str else None
        if plan is None:
            self.require_valid_channel_name(channel)
            if self._durable and self.is_durable(channel):
                await self._send_durable(channel, message)
                return
            plan = self._plans.make(channel)
        copied, _ = copy_message(message)
        payload: bytes = msgpack.packb(copied)
        now_ms = int(time.time() * 1000)
        entry = b"%014d%b\n%b" % (now_ms + self._expiry_ms, plan.channel, payload)
        args = plan.args(now_ms, entry)
        if not await self.run_script(
            plan.shard, _SEND, plan.keys, args, plan.command(now_ms, entry)
        ):
            raise ChannelFull(f"channel {channel!r} holds its capacity of messages")

    async def _send_durable(self, channel: str, message: Message) -> None:
        copied, _ = copy_message(message)
        index = self.shard_index(channel)
        keys = [self.stream_key(channel, index)]
        args = [msgpack.packb(copied), self.capacity_of(channel)]
        if not await self.run_script(index, _DURABLE_SEND, keys, args):
            raise ChannelFull(f"channel {channel!r} holds its capacity of messages")

    async def run_script(
        self,
        index: int,
        script: Script,
        keys: list[str],
        args: list[Any],
        encoded: bytes | None = None,
    ) -> Any:
        """One script call on a host: straight on its open connection, else through `call`.

        `encoded` is the call already in RESP, when the caller has it (`send`)."""
        wire = self.loop_state().shards[index].wire
        if wire is not None and not wire.closed:
            try:
                return await wire.request(encoded or script.command(keys, args))
            except ResponseError as exc:
                if is_noscript(exc):
                    return await self.call(
                        index, lambda wire: script.load_and_run(wire, keys, args)
                    )
                if not is_redirect(exc):
                    raise
                self.loop_state().shards[index].lost()  # a cluster's slot moved: `call` follows
            except UNAVAILABLE:
                pass  # the connection broke: `call` reconnects and retries, within the bound
        return await self.call(index, lambda wire: script.run(wire, keys, args))

    async def receive(self, channel: str) -> dict[str, Any]:
        """Wait for the next message on a channel; a durable one is acknowledged at once."""
        if type(channel) is not str or channel not in self._plans:  # else checked, not durable
            self.require_valid_channel_name(channel)
            if self._durable and self.is_durable(channel):
                delivery = await self.receive_delivery(channel)
                await delivery.ack()
                return delivery.message
            self._plans.make(channel)
        return await self.loop_state().receiver.receive(channel)

    async def receive_delivery(self, channel: str) -> Delivery:
        """Receive a message to acknowledge later with `await delivery.ack()`.

        On a durable channel an unacknowledged message is delivered again (to any receiver)
        once `claim_after` has passed; on others the message is handed over at once.
        """
        self.require_valid_channel_name(channel)
        if self._durable and self.is_durable(channel):
            return await self.loop_state().durable.receive(channel)
        return Delivery(channel, await self.loop_state().receiver.receive(channel), acked=True)

    async def group_add(self, group: str, channel: str) -> None:
        """Add a channel to a group; adding it again renews its membership."""
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        await self._groups.add(group, channel)

    async def group_discard(self, group: str, channel: str) -> None:
        """Remove a channel from a group, if it is in it."""
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        await self._groups.discard(group, channel)

    async def group_send(self, group: str, message: Message) -> None:
        """Send a message to every member of a group: one script call per host."""
        self.require_valid_group_name(group)
        await self._groups.send(group, message)

    async def reassert_memberships(self, index: int, wire: WireConnection) -> int:
        """Write this process's live memberships on a host again (after it came back)."""
        return await self._groups.reassert(index, wire)

    async def flush(self) -> None:
        """Delete every key under the prefix on every host, and this process's buffers."""
        self._groups.clear()
        state = self.loop_state()
        state.receiver.clear()
        for index, shard in enumerate(state.shards):
            pattern = self.key_prefixes[index] + "*"

            async def drop(_: WireConnection, shard: Shard = shard, pattern: str = pattern) -> None:
                await drop_keys(await shard.command_client(), pattern)

            # Through the bounded retry: a Redis in the middle of a failover gets its time.
            await self.call(index, drop)

    async def close(self) -> None:
        """Stop this event loop's receive tasks and close its connections; usable afterwards."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        state = self._states.pop(loop, None)
        if state is not None:
            if self._last_state is state:
                self._last_state = None
            await state.close()
