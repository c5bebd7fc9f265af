"""Failover of broker sessions between gateway processes, through the channel layer's Redis.

Each process keeps a persistent session (``CLEAN_START: False``, a ``SESSION_EXPIRY``) under
its own client id, and beats every ``FAILOVER["HEARTBEAT"]`` seconds into a sorted set in the
channel layer's Redis (client id -> last beat). A process silent for ``FAILOVER["EXPIRY"]``
is gone: a survivor claims its session (``SET NX`` with a lease, so one survivor does it),
connects with the dead process's client id and ``CLEAN_START: False`` (the broker resumes the
session and sends what it queued and what was in flight, again), unsubscribes the session's
filters so that the broker assigns it nothing new, hands every message to the same intake as
its own until none came for ``FAILOVER["QUIET"]`` seconds and all are acknowledged, and then
ends the session (a clean connection under that id, session expiry 0). So a QoS 1/2 message
the broker accepted is handled once the failure is detected, by a process that is alive,
with any broker: no broker feature beyond MQTT's persistent sessions is needed.

A process that comes back before its heartbeat expired resumes its own session; one that
comes back during an adoption takes its session over from the adopter (the broker closes
the adopter's connection), which then leaves it alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.exceptions import ChannelLayerUnavailable, ImproperlyConfiguredGateway
from protocol_adapters.mqtt._compat_gmqtt import Client
from protocol_adapters.mqtt.external_options import FailoverOptions

__all__ = ["SessionFailover"]

logger = logging.getLogger("gateway.mqtt")

Connect = Callable[[str, bool], Awaitable[Client]]
"""Connect under a client id, resuming its session (False) or with a clean start (True)."""


class SessionFailover:
    """This process's heartbeat, and the adoption of the sessions of processes that are gone."""

    def __init__(
        self,
        name: str,
        client_id: str,
        options: FailoverOptions,
        connect: Connect,
        filters: Callable[[], list[str]],
        alias: str = "default",
    ) -> None:
        from gateway.layers import get_channel_layer
        from gateway.layers.redis import RedisChannelLayer

        layer = get_channel_layer(alias)
        if not isinstance(layer, RedisChannelLayer):
            raise ImproperlyConfiguredGateway(
                f'GATEWAY["ADAPTERS"]["{name}"]["OPTIONS"]["FAILOVER"] needs a Redis channel'
                f" layer {alias!r} (the processes' heartbeats live there), got {layer!r}"
            )
        self.layer = layer
        self.name = name
        self.client_id = client_id
        self.options = options
        self.connect = connect
        self.filters = filters
        prefix = layer.key_prefixes[0] + "mqtt:"
        self.sessions_key, self.claim_prefix = prefix + "sessions", prefix + "adopting:"
        self.adopting: dict[str, asyncio.Task[None]] = {}
        self.adopted = 0  # sessions adopted and ended, for health and tests
        self.seen: dict[str, float] = {}  # client id -> its last beat (ms), as read last

    async def run(self, stopping: asyncio.Event) -> None:
        """Beat, and adopt what expired, until `stopping` is set."""
        try:
            while not stopping.is_set():
                try:
                    await self._beat_and_look()
                except (ChannelLayerUnavailable, OSError) as exc:
                    logger.warning("%s: no heartbeat in Redis: %s", self.name, exc)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.options.heartbeat):
                        await stopping.wait()
        finally:
            tasks = list(self.adopting.values())
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _redis(self, *command: Any) -> Any:
        return await self.layer.call(0, lambda wire: wire.execute(*command))

    async def _beat_and_look(self) -> None:
        now = int(time.time() * 1000)
        entries = await self._redis("ZRANGE", self.sessions_key, 0, -1, "WITHSCORES")
        beats = {
            name.decode(): float(score)
            for name, score in zip(entries[::2], entries[1::2], strict=True)
        }
        if self.seen and self.client_id not in beats:
            # Our own beat is gone: Redis lost its data (a restart without persistence). Put
            # back the beats seen before, or a process dead meanwhile would never be adopted.
            lost = [x for name, at in self.seen.items() if name not in beats for x in (at, name)]
            if lost:
                await self._redis("ZADD", self.sessions_key, "NX", *lost)
                beats.update((name, at) for name, at in self.seen.items() if name not in beats)
        await self._redis("ZADD", self.sessions_key, now, self.client_id)
        beats[self.client_id] = now
        self.seen = beats
        oldest = now - self.options.expiry * 1000
        for client_id, at in beats.items():
            if at >= oldest or client_id == self.client_id or client_id in self.adopting:
                continue
            lease = int(self.options.lease * 1000)
            claim = self.claim_prefix + client_id
            if await self._redis("SET", claim, self.client_id, "NX", "PX", lease) is None:
                continue  # another survivor has it
            task = asyncio.create_task(self._adopt(client_id), name=f"mqtt-adopt:{client_id}")
            self.adopting[client_id] = task

    async def _adopt(self, client_id: str) -> None:
        started = time.monotonic()
        try:
            handled = await self._drain(client_id)
            if handled is None:
                return  # its owner came back and took the session over
            if await self._owner_is_back(client_id):
                return
            ending = await self.connect(client_id, True)
            await ending.close()
            await self._redis("ZREM", self.sessions_key, client_id)
            self.adopted += 1
            logger.warning(
                "%s: process %r is gone: adopted its session, handled %d messages queued or"
                " in flight for it, and ended the session (%.2fs)",
                self.name,
                client_id,
                handled,
                time.monotonic() - started,
            )
        except Exception:
            logger.exception("%s: adopting the session of %r failed", self.name, client_id)
        finally:
            self.adopting.pop(client_id, None)
            with contextlib.suppress(Exception):
                await self._redis("DEL", self.claim_prefix + client_id)

    async def _drain(self, client_id: str) -> int | None:
        """Resume the session, stop new assignments, handle everything: messages handled, or
        None when the owner took its session back meanwhile."""
        client = await self.connect(client_id, False)
        try:
            filters = self.filters()
            if filters:
                client.unsubscribe(filters)
            quiet = self.options.quiet
            seen, since = -1, time.monotonic()
            while True:
                if client.lost.is_set():
                    return None
                if client.delivered != seen:
                    seen, since = client.delivered, time.monotonic()
                elif client.acknowledged >= seen and time.monotonic() - since >= quiet:
                    return seen
                await asyncio.sleep(min(quiet / 5, 0.05))
        finally:
            await client.close()

    async def _owner_is_back(self, client_id: str) -> bool:
        score = await self._redis("ZSCORE", self.sessions_key, client_id)
        oldest = time.time() * 1000 - self.options.expiry * 1000
        return score is not None and float(score) >= oldest
