"""Redis Cluster: the layer's shards as hash tags, each tag's slot served by whichever node
owns it now.

A cluster runs a script only on keys of one hash slot. The layer therefore keeps each of its
shards in one slot: every key of shard *i* carries the hash tag ``{tag_i}``
(``asgi:{7}:c:specific.ab12!``), so a send, a group send on that shard and a process's one
blocking pop touch a single slot, exactly as they touch a single host outside a cluster. The
tags depend only on the number of shards (`cluster_shards`), never on the cluster's topology,
so every process places every name alike while slots move between nodes. Their slots are
spread evenly over the 16384, so a cluster whose nodes own even ranges gets an even share.

The slot map comes from ``CLUSTER SLOTS``, asked again after a MOVED (or ASK, TRYAGAIN,
CLUSTERDOWN) answer or a lost connection, which is what a failover or a resharding looks like
from a client. Each node gets one `Shard` per event loop; every layer shard on it shares that
node's connection.
"""

from __future__ import annotations

import asyncio
import bisect
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import SSLConnection, parse_url
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError

from gateway.exceptions import ImproperlyConfiguredGateway
from gateway.layers.redis.config import HostSpec
from gateway.layers.redis.connections import TRANSIENT_CANDIDATES, Shard
from gateway.layers.redis.wire import WireConnection, open_connection

__all__ = [
    "SLOTS",
    "ClusterNodes",
    "ClusterShard",
    "check_cluster_config",
    "cluster_tags",
    "node_spec",
]

SLOTS = 16384


def check_cluster_config(hosts: list[HostSpec], prefix: str, shards: int) -> None:
    """Reject CONFIG that cannot work on a Redis Cluster, naming the option."""
    if any(spec.sentinels for spec in hosts):
        raise ImproperlyConfiguredGateway(
            "channel layer CONFIG cluster: the hosts are nodes of a Redis Cluster, not Sentinels"
        )
    if "{" in prefix or "}" in prefix:
        raise ImproperlyConfiguredGateway(
            f"channel layer CONFIG prefix {prefix!r}: braces would change the hash tag"
            " of every key in a Redis Cluster"
        )
    if not isinstance(shards, int) or not 1 <= shards <= 1024:
        raise ImproperlyConfiguredGateway(
            f"channel layer CONFIG cluster_shards must be an int from 1 to 1024, got {shards!r}"
        )


def cluster_tags(count: int) -> list[str]:
    """One hash tag per shard, the n-th in the n-th of `count` equal ranges of slots."""
    tags: list[str] = []
    candidate = 0
    for index in range(count):
        low, high = index * SLOTS // count, (index + 1) * SLOTS // count
        while not low <= key_slot(str(candidate).encode()) < high:
            candidate += 1
        tags.append(str(candidate))
        candidate = 0
    return tags


def node_spec(template: HostSpec, host: str, port: int) -> HostSpec:
    """A node's address with the options (password, TLS) of the configured start-up node."""
    options: dict[str, Any] = dict(parse_url(template.url)) if template.url is not None else {}
    options.update(template.kwargs)
    for key in ("host", "port", "path", "unix_socket_path", "db"):
        options.pop(key, None)
    if options.pop("connection_class", None) is SSLConnection:
        options["ssl"] = True
    return HostSpec(kwargs={**options, "host": host, "port": port})


class ClusterNodes:
    """The slot map of one cluster as seen from one event loop, and a Shard per node."""

    def __init__(self, startup: list[HostSpec], timeout: float) -> None:
        self.startup = startup
        self.timeout = timeout
        self.nodes: dict[tuple[str, int], Shard] = {}
        self.users: list[ClusterShard] = []
        self._starts: list[int] = []
        self._ranges: list[tuple[int, int, tuple[str, int]]] = []
        # Every node the last slot map named, replicas too: after a failover the start-up
        # nodes may be the dead ones.
        self.known: list[tuple[str, int]] = []
        self.stale = True
        self._refreshing: asyncio.Future[None] | None = None

    async def node_for(self, slot: int) -> Shard:
        """The node serving `slot`, by the slot map (read first when it is stale)."""
        if self.stale:
            await self.refresh()
        position = bisect.bisect(self._starts, slot) - 1
        if position >= 0:
            start, end, address = self._ranges[position]
            if start <= slot <= end:
                node = self.nodes.get(address)
                if node is None:
                    spec = node_spec(self.startup[0], *address)
                    node = self.nodes[address] = Shard(spec, self.timeout)
                return node
        self.stale = True
        raise RedisConnectionError(f"no node of the Redis Cluster serves slot {slot}")

    def invalidate(self) -> None:
        """Read the slot map again before the next command; forget cached connections."""
        self.stale = True
        for user in self.users:
            user.wire = None

    async def refresh(self) -> None:
        """Read the slot map (one read at a time, shared by whoever asks meanwhile)."""
        if self._refreshing is None:
            self._refreshing = asyncio.ensure_future(self._read_slots())
        refreshing = self._refreshing
        try:
            await asyncio.shield(refreshing)
        finally:
            if self._refreshing is refreshing and refreshing.done():
                self._refreshing = None

    async def _read_slots(self) -> None:
        template = self.startup[0]
        candidates = {
            f"{host}:{port}": node_spec(template, host, port) for host, port in self.known
        }
        candidates.update({spec.label: spec for spec in self.startup})
        errors: list[str] = []
        for spec in candidates.values():
            try:
                reply = await self._ask(spec)
            except TRANSIENT_CANDIDATES as exc:
                errors.append(f"{spec.label}: {exc}")
                continue
            ranges, nodes = _parse_slots(reply, spec)
            if not ranges:
                errors.append(f"{spec.label}: no slots assigned")
                continue
            ranges.sort()
            self._ranges = ranges
            self._starts = [start for start, _, _ in ranges]
            self.known = nodes
            self.stale = False
            return
        raise RedisConnectionError(
            f"no node of the Redis Cluster gave its slot map: {'; '.join(errors)}"
        )

    async def _ask(self, spec: HostSpec) -> Any:
        connection = await open_connection(spec, self.timeout, min(self.timeout, 2.0))
        try:
            return await asyncio.wait_for(connection.execute("CLUSTER", "SLOTS"), self.timeout)
        finally:
            connection.close()

    async def close(self) -> None:
        for node in self.nodes.values():
            await node.close()
        self.nodes.clear()


def _parse_slots(
    reply: Any, asked: HostSpec
) -> tuple[list[tuple[int, int, tuple[str, int]]], list[tuple[str, int]]]:
    """CLUSTER SLOTS: [[start, end, [host, port, id, ...], replicas...], ...] -> the masters'
    ranges, and every node named (masters and replicas)."""
    ranges: list[tuple[int, int, tuple[str, int]]] = []
    nodes: dict[tuple[str, int], None] = {}
    for entry in reply or ():
        start, end = int(entry[0]), int(entry[1])
        addresses = [_address(node, asked) for node in entry[2:]]
        ranges.append((start, end, addresses[0]))
        nodes.update(dict.fromkeys(addresses))
    return ranges, list(nodes)


def _address(node: Any, asked: HostSpec) -> tuple[str, int]:
    host = node[0].decode() if isinstance(node[0], bytes) else str(node[0])
    if not host or host == "?":  # the node we asked, which does not know its own address
        host = str(asked.kwargs.get("host") or parse_url(asked.url or "").get("host"))
    return host, int(node[1])


class ClusterShard(Shard):
    """One layer shard: the keys of one hash tag, on whichever node serves its slot now."""

    def __init__(self, nodes: ClusterNodes, tag: str) -> None:
        self.nodes = nodes
        self.tag = tag
        self.slot = key_slot(tag.encode())
        self.label = f"cluster slot {self.slot}"
        self.command_timeout = nodes.timeout
        self.wire: WireConnection | None = None
        nodes.users.append(self)

    async def connection(self) -> WireConnection:
        node = await self.nodes.node_for(self.slot)
        self.wire = await node.connection()
        return self.wire

    async def open_blocking(self, block_seconds: float) -> WireConnection:
        node = await self.nodes.node_for(self.slot)
        return await node.open_blocking(block_seconds)

    async def command_client(self) -> Redis:
        node = await self.nodes.node_for(self.slot)
        return await node.command_client()

    async def blocking_client(self, block_seconds: float) -> Redis:
        node = await self.nodes.node_for(self.slot)
        return await node.blocking_client(block_seconds)

    def lost(self) -> None:
        """A command failed or was redirected: the slot may have moved, read the map again."""
        self.nodes.invalidate()

    async def close(self) -> None:
        self.wire = None  # the node's Shard owns the connection; ClusterNodes.close closes it
