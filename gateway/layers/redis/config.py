"""Reading a Redis layer CONFIG: hosts in Channels' formats, shard placement, glob patterns."""

from __future__ import annotations

import bisect
import fnmatch
import re
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.exceptions import ImproperlyConfiguredGateway

__all__ = ["HashRing", "HostSpec", "glob_to_lua", "parse_hosts"]

# Points per host on the ring: enough for an even spread over a handful of hosts.
_POINTS_PER_HOST = 160


@dataclass(frozen=True)
class HostSpec:
    """One Redis server: a URL (redis://, rediss://, unix://), redis-py keyword arguments, or
    the master a set of Sentinels names."""

    url: str | None = None
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    sentinels: tuple[tuple[str, int], ...] = ()
    master_name: str | None = None
    sentinel_kwargs: Mapping[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """A stable name for the host: its place on the hash ring depends only on this."""
        if self.master_name is not None:
            return f"sentinel:{self.master_name}"
        if self.url is not None:
            return self.url
        return f"{self.kwargs.get('host', 'localhost')}:{self.kwargs.get('port', 6379)}"


def parse_hosts(hosts: Iterable[Any] | None) -> list[HostSpec]:
    """Accept Channels' host formats: URL strings, (host, port) pairs, dicts of kwargs."""
    if hosts is None:
        return [HostSpec(kwargs={"host": "localhost", "port": 6379})]
    if isinstance(hosts, str | tuple | dict):
        raise ImproperlyConfiguredGateway(
            f"channel layer CONFIG hosts must be a list of hosts, got {hosts!r}"
        )
    specs = [_parse_host(host) for host in hosts]
    if not specs:
        raise ImproperlyConfiguredGateway("channel layer CONFIG hosts is empty")
    return specs


def _parse_host(host: Any) -> HostSpec:
    if isinstance(host, str):
        return HostSpec(url=host)
    if isinstance(host, tuple | list) and len(host) == 2:
        return HostSpec(kwargs={"host": host[0], "port": int(host[1])})
    if isinstance(host, Mapping):
        kwargs = dict(host)
        if "sentinels" in kwargs:
            return _parse_sentinel(kwargs)
        address = kwargs.pop("address", None)
        if isinstance(address, str):
            return HostSpec(url=address, kwargs=kwargs)
        if isinstance(address, tuple | list) and len(address) == 2:
            kwargs.update(host=address[0], port=int(address[1]))
        return HostSpec(kwargs=kwargs)
    raise ImproperlyConfiguredGateway(
        f"channel layer CONFIG host {host!r} is not a URL, a (host, port) pair or a dict"
    )


def _parse_sentinel(kwargs: dict[str, Any]) -> HostSpec:
    """Channels' Sentinel format: {"sentinels": [(host, port)...], "master_name": ...}."""
    sentinels = tuple((str(host), int(port)) for host, port in kwargs.pop("sentinels"))
    master_name = kwargs.pop("master_name", None)
    if not sentinels or not isinstance(master_name, str):
        raise ImproperlyConfiguredGateway(
            "a Sentinel host needs a non-empty 'sentinels' list and a 'master_name'"
        )
    sentinel_kwargs = dict(kwargs.pop("sentinel_kwargs", None) or {})
    return HostSpec(
        kwargs=kwargs,
        sentinels=sentinels,
        master_name=master_name,
        sentinel_kwargs=sentinel_kwargs,
    )


class HashRing:
    """Consistent hashing: adding a host moves only about 1/N of the names to it."""

    def __init__(self, labels: list[str]) -> None:
        points: list[tuple[int, int]] = []
        for index, label in enumerate(labels):
            for replica in range(_POINTS_PER_HOST):
                points.append((zlib.crc32(f"{label}#{replica}".encode()), index))
        points.sort()
        self._hashes = [point for point, _ in points]
        self._shards = [shard for _, shard in points]
        self.size = len(labels)

    def shard_of(self, name: str) -> int:
        """The index of the host that holds `name`."""
        if self.size == 1:
            return 0
        position = bisect.bisect(self._hashes, zlib.crc32(name.encode()))
        return self._shards[position % len(self._shards)]


def glob_to_lua(pattern: str) -> str:
    """Translate an fnmatch glob into an anchored Lua pattern, for matching inside scripts."""
    out = ["^"]
    index = 0
    while index < len(pattern):
        char = pattern[index]
        index += 1
        if char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        elif char == "[" and "]" in pattern[index + 1 :]:
            end = pattern.index("]", index + 1)
            body = pattern[index:end]
            index = end + 1
            negate = body.startswith("!")
            body = body[1:] if negate else body
            out.append("[" + ("^" if negate else "") + _lua_class(body) + "]")
        else:
            out.append(_lua_escape(char))
    return "".join(out) + "$"


def _lua_class(body: str) -> str:
    # Inside a set only '%', ']' and '^' need care; ranges (a-z) keep their '-'.
    return "".join("%" + char if char in "%]^" else char for char in body)


def _lua_escape(char: str) -> str:
    return "%" + char if char in "^$()%.[]*+-?" else char


def compile_globs(patterns: Iterable[str]) -> list[re.Pattern[str]]:
    """The Python side of the same globs."""
    return [re.compile(fnmatch.translate(pattern)) for pattern in patterns]
