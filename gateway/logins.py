"""Login checks that no flood can turn against the other intakes: `LoginGate`.

Every adapter that checks a device's password (the embedded MQTT broker, the EMQX
authenticator) runs each check through its gate, configured by its ``LOGINS`` option
(`LoginLimits`):

* at most ``CONCURRENCY`` checks run at once; the others wait, served in turn address by
  address (round robin), so one address's burst delays another address by a few checks at
  most, not by the whole burst;
* an address may have ``MAX_PER_ADDRESS`` checks running or waiting, and ``MAX_WAITING``
  checks may wait in all: past either, a login is refused as *busy* (MQTT: CONNACK 3,
  server unavailable; the client retries later), the refusal held ``BUSY_DELAY`` seconds
  first (`busy_hold`, at most ``MAX_WAITING`` at once) so that a client retrying at once
  retries once per ``BUSY_DELAY``;
* an address with ``MAX_FAILURES`` failed logins in the last ``FAILURE_WINDOW`` seconds is
  refused without a check as *limited* (MQTT: CONNACK 5, not authorized) until its oldest
  failure leaves the window. Refusals are not failures: the address gets in again.

The hashing itself runs off the database thread (`gateway.passwords`).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeVar

from gateway.busy import BUSY_DELAY, BusyHold

__all__ = ["MAX_TRACKED_ADDRESSES", "LoginGate", "LoginLimits", "LoginRefused"]

_T = TypeVar("_T")

MAX_TRACKED_ADDRESSES: Final = 100_000
"""Addresses whose recent failures a gate remembers; the least recent are forgotten first."""


@dataclass(frozen=True)
class LoginLimits:
    """The ``LOGINS`` option, parsed."""

    concurrency: int = 2
    max_waiting: int = 100
    max_per_address: int = 8
    max_failures: int = 10
    failure_window: float = 60.0
    busy_delay: float = BUSY_DELAY


class LoginRefused(Exception):
    """A login refused before its check: `reason` is ``"busy"`` or ``"limited"``."""

    def __init__(self, reason: Literal["busy", "limited"], detail: str) -> None:
        super().__init__(detail)
        self.reason: Literal["busy", "limited"] = reason


class LoginGate:
    """Runs password checks: bounded at once, fair between addresses, failures rate-limited."""

    def __init__(self, limits: LoginLimits, *, most_held: int | None = None) -> None:
        self.limits = limits
        held = limits.max_waiting if most_held is None else most_held
        self.busy_hold = BusyHold(limits.busy_delay, held)
        """Holds the busy refusals (``BUSY_DELAY``), at most `most_held` (by default
        ``MAX_WAITING``) at once."""
        self.checking = 0
        """Checks running now."""
        self.waiting = 0
        """Checks waiting for their turn."""
        self.refused: Counter[str] = Counter()
        """Logins refused before a check, by reason (``"busy"``, ``"limited"``)."""
        self._queues: OrderedDict[str, deque[asyncio.Future[None]]] = OrderedDict()
        self._pending: Counter[str] = Counter()
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    async def check(self, address: str, attempt: Callable[[], Awaitable[_T | None]]) -> _T | None:
        """`attempt()`'s answer in its turn (None, a failed login, counts against `address`).

        Raises `LoginRefused` instead when the address or the gate is past its limits.
        """
        self._admit(address)
        self._pending[address] += 1
        try:
            await self._acquire(address)
        except BaseException:
            self._unpend(address)
            raise
        # Shielded: a check cannot be stopped once it hashes (a thread runs it), so a caller
        # that goes away leaves it to finish, and its turn ends only then.
        try:
            running = asyncio.ensure_future(attempt())
        except BaseException:
            self._release()
            self._unpend(address)
            raise
        running.add_done_callback(lambda done: self._finished(address, done))
        result = await asyncio.shield(running)
        if result is None:
            self._failed(address)
        return result

    def failures(self, address: str) -> int:
        """The address's failed logins within the window."""
        times = self._failures.get(address)
        if times is None:
            return 0
        horizon = time.monotonic() - self.limits.failure_window
        while times and times[0] <= horizon:
            times.popleft()
        if not times:
            del self._failures[address]
        return len(times)

    # --- admission ------------------------------------------------------------------------

    def _admit(self, address: str) -> None:
        limits = self.limits
        if self.failures(address) >= limits.max_failures:
            self._refuse("limited", f"{limits.max_failures} failed logins within "
                         f"{limits.failure_window:g}s from {address}")  # fmt: skip
        if self._pending[address] >= limits.max_per_address:
            self._refuse("busy", f"{limits.max_per_address} logins from {address} "
                         "are being checked")  # fmt: skip
        if self.checking >= limits.concurrency and self.waiting >= limits.max_waiting:
            self._refuse("busy", f"{limits.max_waiting} logins wait for a check")

    def _refuse(self, reason: Literal["busy", "limited"], detail: str) -> None:
        self.refused[reason] += 1
        raise LoginRefused(reason, detail)

    def _failed(self, address: str) -> None:
        times = self._failures.setdefault(address, deque())
        times.append(time.monotonic())
        self._failures.move_to_end(address)
        while len(times) > self.limits.max_failures:
            times.popleft()
        while len(self._failures) > MAX_TRACKED_ADDRESSES:
            self._failures.popitem(last=False)

    # --- turns ----------------------------------------------------------------------------

    def _finished(self, address: str, done: asyncio.Future[Any]) -> None:
        if not done.cancelled():
            done.exception()  # retrieved: the caller, if still there, has it too
        self._release()
        self._unpend(address)

    def _unpend(self, address: str) -> None:
        self._pending[address] -= 1
        if self._pending[address] <= 0:
            del self._pending[address]

    async def _acquire(self, address: str) -> None:
        if self.checking < self.limits.concurrency and not self.waiting:
            self.checking += 1
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queues.setdefault(address, deque()).append(turn)
        self.waiting += 1
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._release()  # the turn came with the cancellation: pass it on
            else:
                self._forget(address, turn)
            raise

    def _forget(self, address: str, turn: asyncio.Future[None]) -> None:
        queue = self._queues.get(address)
        if queue is not None and turn in queue:
            queue.remove(turn)
            self.waiting -= 1
            if not queue:
                del self._queues[address]

    def _release(self) -> None:
        self.checking -= 1
        while self._queues:
            address, queue = next(iter(self._queues.items()))
            turn = queue.popleft()
            self.waiting -= 1
            if queue:
                self._queues.move_to_end(address)  # the next address's turn comes first
            else:
                del self._queues[address]
            if not turn.done():
                turn.set_result(None)
                self.checking += 1
                return
