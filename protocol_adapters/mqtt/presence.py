"""Presence on any broker (docs/specs/mqtt.md, *Presence*): birth, last will and last seen.

Devices publish a retained birth message on their status topic and leave a retained last will
there; the adapter subscribes to the status topics (retained messages included, so a restarted
gateway reads every device's last state) and records each change through the `DeviceStore`.
Any other message from a device's topics marks it seen (online, for a device that announces
nothing), at most once per `SEEN_EVERY` seconds per device; with a ``TIMEOUT``, devices that
announce nothing and stay silent that long are marked offline.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Final

from gateway.devices import DeviceStore, load_device_store
from protocol_adapters.mqtt.device_options import PresenceOptions

__all__ = ["PresenceTracker"]

logger = logging.getLogger("gateway.mqtt")

SEEN_EVERY: Final = 5.0
"""Seconds between two last-seen writes for one device (a fraction of TIMEOUT when shorter)."""
_Change = tuple[str, bool, bool]  # device id, online, seen now


class PresenceTracker:
    """Keeps `Device.online` and `last_seen` from status topics and device traffic."""

    def __init__(self, options: PresenceOptions) -> None:
        self.options = options
        self.store: DeviceStore = load_device_store(options.store)
        self.announced: set[str] = set()
        """Devices that use birth and will messages: the last-seen timeout leaves them be."""
        self._seen_at: dict[str, float] = {}
        self._every = (
            SEEN_EVERY if options.timeout is None else min(SEEN_EVERY, options.timeout / 4)
        )
        self._changes: asyncio.Queue[_Change] = asyncio.Queue()

    @property
    def filters(self) -> list[str]:
        """What to subscribe to: the status topics."""
        return [self.options.topic.filter()]

    def observe(self, topic: str, payload: bytes, retain: bool) -> bool:
        """Note one message; True when it was a status message."""
        status = self.options.topic.match(topic)
        if status is not None:
            self._status(status["device_id"], payload, retain)
            return True
        if not retain:  # a retained message says nothing about the device being there now
            device_id = self.options.topic.match_prefix(topic, "device_id")
            if device_id is not None:
                self._seen(device_id)
        return False

    def _status(self, device_id: str, payload: bytes, retain: bool) -> None:
        if payload == self.options.online:
            self.announced.add(device_id)
            self._changes.put_nowait((device_id, True, not retain))
        elif payload == self.options.offline:
            self.announced.add(device_id)
            self._changes.put_nowait((device_id, False, not retain))
        elif payload:  # an empty retained message only clears the topic
            logger.warning(
                "ignoring the status %r of %s: neither online nor offline", payload[:64], device_id
            )

    def _seen(self, device_id: str) -> None:
        now = time.monotonic()
        if now - self._seen_at.get(device_id, -1e9) < self._every:
            return
        if len(self._seen_at) >= 100_000:
            self._seen_at.clear()  # a bound, not an LRU: at worst one more write per device
        self._seen_at[device_id] = now
        self._changes.put_nowait((device_id, True, True))

    async def run(self, stop: asyncio.Event) -> None:
        """Write the changes in arrival order, and expire silent devices, until `stop` is set."""
        sweeper = asyncio.ensure_future(self._sweep(stop))
        try:
            while not stop.is_set():
                device_id, online, seen = await self._changes.get()
                try:
                    await self.store.record_presence(device_id, online, seen=seen)
                except Exception:
                    logger.exception("recording the presence of %s failed", device_id)
        finally:
            sweeper.cancel()
            await asyncio.gather(sweeper, return_exceptions=True)

    async def _sweep(self, stop: asyncio.Event) -> None:
        timeout = self.options.timeout
        if timeout is None:
            return
        while not stop.is_set():
            await asyncio.sleep(min(timeout / 2, 30.0))
            before = datetime.now(UTC) - timedelta(seconds=timeout)
            try:
                expired = await self.store.expire_silent(before, frozenset(self.announced))
            except Exception:
                logger.exception("marking silent devices offline failed")
                continue
            for device_id in expired:
                self._seen_at.pop(device_id, None)
            if expired:
                logger.info(
                    "marked offline after %.0fs of silence: %s", timeout, ", ".join(expired)
                )
