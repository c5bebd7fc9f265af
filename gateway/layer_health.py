"""The channel layer's part of `/-/health`: a periodic probe, so a health request costs nothing.

Only layers with a server to lose are probed: the Redis layer gets one PING per shard every
`interval` seconds. The in-memory layer, and layers of other packages, are reported `ok`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sys
import time
from collections.abc import Awaitable, Callable

from gateway.health import LayerReport
from gateway.layers import DEFAULT_CHANNEL_LAYER, channel_layers

__all__ = ["LayerProbe", "layer_ping"]

logger = logging.getLogger("gateway.layers")

Ping = Callable[[], Awaitable[None]]


def layer_ping(layer: object) -> Ping | None:
    """How to reach a layer's server, or None when it has none we know how to reach."""
    # A RedisChannelLayer's module is imported when one exists; never import it (and redis)
    # just to find out that the layer is something else.
    redis_core = sys.modules.get("gateway.layers.redis.core")
    if redis_core is not None and isinstance(layer, redis_core.RedisChannelLayer):
        from gateway.layers.redis.probe import ping_shards

        return functools.partial(ping_shards, layer)
    return None


class LayerProbe:
    """Pings a channel layer every `interval` seconds; `report()` tells the last outcome."""

    def __init__(self, layer: object, interval: float = 2.0, timeout: float = 2.0) -> None:
        self.backend = f"{type(layer).__module__}.{type(layer).__qualname__}"
        self.interval = interval
        self.timeout = timeout
        self._ping = layer_ping(layer)
        self._reachable = True
        self._error = ""
        self._since = time.monotonic()
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def for_default_layer(cls) -> LayerProbe | None:
        """A probe of the "default" alias, or None when there is none (or it cannot be built)."""
        if DEFAULT_CHANNEL_LAYER not in channel_layers.backends and (
            DEFAULT_CHANNEL_LAYER not in channel_layers
        ):
            return None
        try:
            layer = channel_layers[DEFAULT_CHANNEL_LAYER]
        except Exception:
            logger.exception("The default channel layer cannot be built; it is not probed.")
            return None
        return cls(layer)

    async def start(self) -> None:
        """Probe once, then every `interval` seconds in a task of its own."""
        if self._ping is None:
            return
        await self.check()
        self._task = asyncio.create_task(self._run(), name="gateway-layer-probe")

    async def stop(self) -> None:
        """Stop probing."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def check(self) -> None:
        """Probe now, bounded by `timeout`, and remember the outcome."""
        assert self._ping is not None
        try:
            async with asyncio.timeout(self.timeout):
                await self._ping()
        except Exception as exc:  # whatever keeps the server from answering makes it unreachable
            self._failed(str(exc) or f"no answer within {self.timeout:g}s")
        else:
            self._answered()

    def report(self) -> LayerReport:
        """What `/-/health` shows: `degraded` while the last probe got no answer."""
        if self._ping is None:
            return {"backend": self.backend, "status": "ok", "detail": "not probed"}
        if self._reachable:
            return {"backend": self.backend, "status": "ok", "detail": "reachable"}
        since = time.monotonic() - self._since
        detail = f"unreachable ({since:.0f}s): {self._error}"
        return {"backend": self.backend, "status": "degraded", "detail": detail}

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.check()

    def _failed(self, error: str) -> None:
        if self._reachable:
            logger.warning("The channel layer is unreachable: %s", error)
            self._since = time.monotonic()
        self._reachable, self._error = False, error

    def _answered(self) -> None:
        if not self._reachable:
            logger.warning(
                "The channel layer is reachable again, after %.1fs.", time.monotonic() - self._since
            )
        self._reachable, self._error = True, ""
