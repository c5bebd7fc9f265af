"""Caps on an intake's work before its application runs, so that no flood starves the others.

A webhook intake (an SMS provider's, an inbound-mail provider's) reads, checks, parses and
stores every request before the application sees it: on the event loop, on a thread (a
provider's API fetch), on the database thread that every adapter shares (the SMS store's
record of the message). Unbounded, a flood on one webhook queues that work without limit and
every other intake waits behind it. Each such adapter runs that work through its `IntakeGate`,
configured by its ``INTAKE`` option (`IntakeLimits`, `intake_option`):

* at most ``CONCURRENCY`` requests do that work at once; the others wait, first come first
  served;
* at most ``MAX_WAITING`` requests wait, each at most ``WAIT`` seconds: past either, the request
  is refused as *busy* (`IntakeBusy`) with nothing of it stored, and the adapter answers in its
  protocol's words for "retry later" (HTTP 503 with ``Retry-After: RETRY_AFTER``; providers
  retry), logs it and counts it (``gateway_events_overloaded_total``), after ``BUSY_DELAY``
  seconds (`BusyHold`; at most ``MAX_WAITING`` held at once): a client that asks again as
  soon as it is answered (a flood, a client that ignores Retry-After) then asks at most once
  per ``BUSY_DELAY``, instead of as fast as the event loop can refuse it, which is time taken
  from every other intake.
  A provider retrying on its schedule loses nothing; the held request costs its connection.

The application's own concurrency stays the dispatcher's (``MAX_IN_FLIGHT``); MQTT logins have
their own gate (`gateway.logins`), SMTP its connection cap (``MAX_CONNECTIONS``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final

from gateway.busy import BUSY_DELAY, BusyHold
from gateway.metrics import MetricsRegistry
from gateway.options import Option, busy_delay, is_int, is_number

__all__ = [
    "BUSY_BODY",
    "INTAKE_KEYS",
    "IntakeBusy",
    "IntakeGate",
    "IntakeLimits",
    "intake_option",
    "refused_busy",
]

BUSY_BODY: Final = b"Service Unavailable: busy, retry later\n"
"""The body of a webhook's 503 past its cap."""


@dataclass(frozen=True)
class IntakeLimits:
    """The ``INTAKE`` option, parsed."""

    concurrency: int = 4
    max_waiting: int = 100
    wait: float = 5.0
    retry_after: int = 5
    busy_delay: float = BUSY_DELAY


INTAKE_KEYS: Final = ("CONCURRENCY", "MAX_WAITING", "WAIT", "RETRY_AFTER", "BUSY_DELAY")


class IntakeBusy(Exception):
    """A request refused before any work: the gate is full or its wait ran out."""


class IntakeGate:
    """Lets ``CONCURRENCY`` requests work at once and ``MAX_WAITING`` wait, each for ``WAIT``."""

    def __init__(self, limits: IntakeLimits) -> None:
        self.limits = limits
        self.working = 0
        """Requests working now."""
        self.waiting = 0
        """Requests waiting for their turn."""
        self.refused = 0
        """Requests refused as busy."""
        self.peak = 0
        """The most requests that worked at once."""
        self._turns: deque[asyncio.Future[None]] = deque()
        self.busy_hold = BusyHold(limits.busy_delay, limits.max_waiting)
        """Holds the busy answers (``BUSY_DELAY``), at most ``MAX_WAITING`` at once."""

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """Work in the block once it is this request's turn; `IntakeBusy` if none comes."""
        await self._acquire()
        try:
            yield
        finally:
            self._release()

    async def _acquire(self) -> None:
        limits = self.limits
        if self.working < limits.concurrency and not self.waiting:
            self._start()
            return
        if self.waiting >= limits.max_waiting:
            self._refuse(f"{limits.concurrency} requests at work and {self.waiting} waiting")
        loop = asyncio.get_running_loop()
        turn: asyncio.Future[None] = loop.create_future()
        self._turns.append(turn)
        self.waiting += 1
        timer = loop.call_later(limits.wait, self._expire, turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled() and turn.exception() is None:
                self._release()  # the turn came with the cancellation: pass it on
            else:
                self._forget(turn)  # (an expired turn is forgotten already)
            raise
        finally:
            timer.cancel()

    def _start(self) -> None:
        self.working += 1
        self.peak = max(self.peak, self.working)

    def _refuse(self, detail: str) -> None:
        self.refused += 1
        raise IntakeBusy(detail)

    def _expire(self, turn: asyncio.Future[None]) -> None:
        if turn.done():
            return
        self._forget(turn)
        self.refused += 1
        turn.set_exception(IntakeBusy(f"no turn within {self.limits.wait:g}s"))

    def _forget(self, turn: asyncio.Future[None]) -> None:
        if turn in self._turns:
            self._turns.remove(turn)
            self.waiting -= 1

    def _release(self) -> None:
        self.working -= 1
        while self._turns:
            turn = self._turns.popleft()
            self.waiting -= 1
            if not turn.done():
                turn.set_result(None)
                self._start()
                return


def refused_busy(
    log: logging.Logger, metrics: MetricsRegistry, protocol: str, what: str, limits: IntakeLimits,
    detail: str,
) -> list[tuple[bytes, bytes]]:  # fmt: skip
    """Log and count one request refused as busy; the headers of its 503 (Retry-After)."""
    metrics.inc(protocol, "rejected")
    metrics.inc(protocol, "overloaded")
    log.warning("%s answered 503 (retry after %ds): busy, %s.", what, limits.retry_after, detail)
    return [(b"retry-after", str(limits.retry_after).encode())]


def _positive_int(value: object) -> str | None:
    return None if is_int(value) and value >= 1 else "an integer >= 1"  # type: ignore[operator]


def _wait(value: object) -> str | None:
    return None if is_number(value) and value > 0 else "a number of seconds > 0"  # type: ignore[operator]


def _retry_after(value: object) -> str | None:
    ok = is_int(value) and value >= 0  # type: ignore[operator]
    return None if ok else "a whole number of seconds >= 0 (the Retry-After header)"


_RULES: Final = {
    "CONCURRENCY": _positive_int,
    "MAX_WAITING": _positive_int,
    "WAIT": _wait,
    "RETRY_AFTER": _retry_after,
    "BUSY_DELAY": busy_delay,
}


def intake_option(limits: IntakeLimits | None = None) -> Option:
    """``INTAKE`` = ``{"CONCURRENCY", "MAX_WAITING", "WAIT", "RETRY_AFTER", "BUSY_DELAY"}``
    -> `IntakeLimits`; every key optional, `limits` the defaults."""
    base = limits or IntakeLimits()
    default = {
        "CONCURRENCY": base.concurrency,
        "MAX_WAITING": base.max_waiting,
        "WAIT": base.wait,
        "RETRY_AFTER": base.retry_after,
        "BUSY_DELAY": base.busy_delay,
    }

    def parse(value: Mapping[str, Any] | None) -> IntakeLimits:
        merged = {**default, **(value or {})}
        return IntakeLimits(
            int(merged["CONCURRENCY"]),
            int(merged["MAX_WAITING"]),
            float(merged["WAIT"]),
            int(merged["RETRY_AFTER"]),
            float(merged["BUSY_DELAY"]),
        )

    def checks(value: object) -> list[str]:
        if value is None:
            return []
        if not isinstance(value, Mapping):
            return [f"must be a dict with {', '.join(INTAKE_KEYS)}, got {value!r}"]
        problems = [f'["{key}"] is not a known key' for key in value if key not in _RULES]
        for key, check in _RULES.items():
            what = check(value[key]) if key in value else None
            if what is not None:
                problems.append(f'["{key}"] must be {what}, got {value[key]!r}')
        return problems

    return Option("INTAKE", default, parse=parse, checks=checks)
