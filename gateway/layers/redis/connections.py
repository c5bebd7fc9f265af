"""Connections to one Redis host from one event loop: the shared wire connection, scripts,
and redis-py clients for what is off the hot path (streams, SCAN)."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import AskError, ClusterDownError, ReadOnlyError, ResponseError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.layers.redis.config import HostSpec
from gateway.layers.redis.wire import WireConnection, open_connection, pack_args

__all__ = [
    "TRANSIENT_CANDIDATES",
    "UNAVAILABLE",
    "Script",
    "Shard",
    "drop_keys",
    "is_noscript",
    "is_redirect",
    "is_transient",
    "make_client",
]

# What "Redis is not there right now" looks like; anything else is a real error.
UNAVAILABLE: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ConnectionError,
    OSError,
)


# What a caller catches to ask is_transient about: the above, timeouts and error replies.
TRANSIENT_CANDIDATES: tuple[type[BaseException], ...] = (*UNAVAILABLE, TimeoutError, ResponseError)

# Error replies of a cluster whose slots moved or are moving (or of a master turned replica):
# the command may succeed once the slot map is read again.
_REDIRECTS = ("MOVED", "ASK", "TRYAGAIN", "CLUSTERDOWN", "UNBLOCKED", "READONLY")
_REDIRECT_ERRORS = (AskError, TryAgainError, ClusterDownError, ReadOnlyError)


def is_redirect(error: BaseException) -> bool:
    """True for a cluster's answer that the key lives (or will live) elsewhere."""
    if isinstance(error, _REDIRECT_ERRORS):
        return True
    return isinstance(error, ResponseError) and str(error).startswith(_REDIRECTS)


def is_transient(error: BaseException) -> bool:
    """True for what retrying (after reading the slot map again) can fix."""
    return isinstance(error, (*UNAVAILABLE, TimeoutError)) or is_redirect(error)


class Script:
    """A Lua script run with EVALSHA, loaded again when Redis answers NOSCRIPT."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()
        # The encoded head of a call (EVALSHA, sha, keys), per keys and argument count: a
        # send encodes only its own arguments.
        self._heads: dict[tuple[Any, ...], bytes] = {}

    def command(self, keys: list[str], args: list[Any]) -> bytes:
        """The EVALSHA call in RESP."""
        cache_key = (*keys, len(args))
        head = self._heads.get(cache_key)
        if head is None:
            if len(self._heads) > 4096:
                self._heads.clear()
            count = 3 + len(keys) + len(args)
            head = b"*%d\r\n%b" % (count, pack_args(["EVALSHA", self.sha, len(keys), *keys]))
            self._heads[cache_key] = head
        return head + pack_args(args)

    def head(self, keys: list[str], fixed: list[Any], more: int) -> bytes:
        """The start of a call whose first arguments are `fixed`, `more` arguments to follow."""
        count = 3 + len(keys) + len(fixed) + more
        return b"*%d\r\n%b" % (count, pack_args(["EVALSHA", self.sha, len(keys), *keys, *fixed]))

    async def run(self, connection: WireConnection, keys: list[str], args: list[Any]) -> Any:
        try:
            return await connection.request(self.command(keys, args))
        except ResponseError as exc:
            if not is_noscript(exc):
                raise
        return await self.load_and_run(connection, keys, args)

    async def load_and_run(
        self, connection: WireConnection, keys: list[str], args: list[Any]
    ) -> Any:
        """For a Redis that restarted (or never saw the script): load it, then run."""
        await connection.execute("SCRIPT", "LOAD", self.source)
        return await connection.request(self.command(keys, args))


def is_noscript(error: ResponseError) -> bool:
    """True for Redis' answer to EVALSHA of a script it does not hold."""
    return str(error).startswith("NOSCRIPT")


async def drop_keys(client: Redis, pattern: str) -> None:
    """Delete every key matching `pattern`, a thousand at a time (SCAN, UNLINK)."""
    batch: list[Any] = []
    async for key in client.scan_iter(match=pattern, count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            await client.unlink(*batch)
            batch = []
    if batch:
        await client.unlink(*batch)


def make_client(spec: HostSpec, **overrides: Any) -> Redis:
    """A redis-py client for one host; retries are ours (bounded), so redis-py's are off."""
    options: dict[str, Any] = {"retry": Retry(NoBackoff(), 0), "socket_connect_timeout": 2.0}
    options.update(spec.kwargs)
    options.update(overrides)
    if spec.sentinels and spec.master_name is not None:
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            list(spec.sentinels), sentinel_kwargs=dict(spec.sentinel_kwargs)
        )
        client: Redis = sentinel.master_for(spec.master_name, **options)
        return client
    if spec.url is not None:
        return Redis.from_url(spec.url, **options)
    return Redis(**options)


class Shard:
    """One Redis host as seen from one event loop."""

    def __init__(self, spec: HostSpec, command_timeout: float) -> None:
        self.spec = spec
        self.label = spec.label
        self.command_timeout = command_timeout
        self.wire: WireConnection | None = None
        self._connecting: asyncio.Future[WireConnection] | None = None
        self._client: Redis | None = None

    async def connection(self) -> WireConnection:
        """The shared connection, opened on first use and again after it broke."""
        wire = self.wire
        if wire is not None and not wire.closed:
            return wire
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(
                open_connection(self.spec, self.command_timeout)
            )
        connecting = self._connecting
        try:
            self.wire = await asyncio.shield(connecting)
        finally:
            if self._connecting is connecting and connecting.done():
                self._connecting = None
        return self.wire

    async def open_blocking(self, block_seconds: float) -> WireConnection:
        """A connection of its own for a blocking pop, which would stall the shared one."""
        return await open_connection(self.spec, block_seconds + 10)

    async def command_client(self) -> Redis:
        """A redis-py client, for streams and housekeeping."""
        if self._client is None:
            self._client = make_client(self.spec, socket_timeout=self.command_timeout)
        return self._client

    async def blocking_client(self, block_seconds: float) -> Redis:
        """A redis-py client of its own for blocking stream reads."""
        return make_client(self.spec, socket_timeout=block_seconds + 10)

    def lost(self) -> None:
        """A command failed for want of Redis (or was refused by a master turned replica).

        A plain host is simply reconnected to when its connection broke; behind Sentinel the
        connection is dropped, so that the next one asks the Sentinels where the master is now.
        """
        if self.spec.sentinels and self.wire is not None:
            self.wire.abort()
            self.wire = None

    async def close(self) -> None:
        if self.wire is not None:
            self.wire.close()
            self.wire = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None
