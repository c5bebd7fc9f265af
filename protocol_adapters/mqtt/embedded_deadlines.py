"""One timer for every connection's deadline: the CONNECT timeout and the keep-alive.

A timer handle per idle connection costs more than the rest of its state together; here a
connection's deadline is one entry in a set, in a slot of ``RESOLUTION`` seconds, and one
loop timer wakes for the earliest slot. An item is checked once the loop's clock has passed
the end of its deadline's slot: late by at most one slot, never early.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
from typing import Final, Protocol

__all__ = ["RESOLUTION", "Deadlines", "Expiring"]

logger = logging.getLogger("gateway.mqtt")

RESOLUTION: Final = 0.5
"""Seconds per slot: how late past its deadline an item may be checked."""


class Expiring(Protocol):
    """What `Deadlines` holds: an item that says, when its deadline came, what comes next."""

    deadline_slot: int | None
    """The slot it waits in (kept by `Deadlines`), None when it waits in none."""

    def expired(self, now: float) -> float | None:
        """Its deadline came: act on it; return the next deadline, or None for no more."""
        ...


class Deadlines:
    """Deadlines of many items on one event-loop timer, grouped in slots."""

    def __init__(self, resolution: float = RESOLUTION) -> None:
        self.resolution = resolution
        self._slots: dict[int, set[Expiring]] = {}
        self._order: list[int] = []
        """A heap of slot numbers (a slot emptied by `discard` may stay in it)."""
        self._done = -1
        """The last slot checked: a deadline is never put in it or before it."""
        self._timer: asyncio.TimerHandle | None = None
        self._armed_for = 0
        self._firing = False

    def __len__(self) -> int:
        return sum(len(bucket) for bucket in self._slots.values())

    def add(self, item: Expiring, when: float) -> None:
        """Check `item` at loop time `when` (replacing the deadline it had)."""
        self.discard(item)
        slot = max(math.ceil(when / self.resolution), self._done + 1)
        bucket = self._slots.get(slot)
        if bucket is None:
            bucket = self._slots[slot] = set()
            heapq.heappush(self._order, slot)
        bucket.add(item)
        item.deadline_slot = slot
        if not self._firing and (self._timer is None or slot < self._armed_for):
            self._arm(slot)

    def discard(self, item: Expiring) -> None:
        """Forget `item`'s deadline, if it has one."""
        slot, item.deadline_slot = item.deadline_slot, None
        bucket = self._slots.get(slot) if slot is not None else None
        if bucket is not None:
            bucket.discard(item)
            if not bucket:
                del self._slots[slot]  # type: ignore[arg-type]

    def close(self) -> None:
        """Stop the timer and forget every deadline."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for bucket in self._slots.values():
            for item in bucket:
                item.deadline_slot = None
        self._slots.clear()
        self._order.clear()

    def _arm(self, slot: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._armed_for = slot
        loop = asyncio.get_running_loop()
        self._timer = loop.call_at(slot * self.resolution, self._fire)

    def _fire(self) -> None:
        self._timer = None
        now = asyncio.get_running_loop().time()
        due = math.floor(now / self.resolution)  # a timer run a hair early is armed again
        self._firing = True
        try:
            while self._order and self._order[0] <= due:
                self._done = heapq.heappop(self._order)
                self._check(self._done, self._slots.pop(self._done, ()), now)
        finally:
            self._firing = False
            self._rearm()

    def _check(self, slot: int, bucket: set[Expiring] | tuple[()], now: float) -> None:
        for item in bucket:
            if item.deadline_slot != slot:
                continue  # discarded, or given another deadline, by an item checked before it
            item.deadline_slot = None
            try:
                following = item.expired(now)
            except Exception:  # one item's bug must not stop every other deadline
                logger.exception("mqtt deadline check of %r failed", item)
                continue
            if following is not None:
                self.add(item, following)

    def _rearm(self) -> None:
        order = self._order
        while order and order[0] not in self._slots:
            heapq.heappop(order)
        if order:
            self._arm(order[0])
