"""Per-key ordered, bounded, retrying dispatch of inbound events, shared by every adapter.

Events with the same key (an MQTT topic, a mailbox, an SMS sender) run one after another in
submission order; different keys run concurrently. At most ``max_in_flight`` events are
accepted and unfinished at once: past that, ``submit`` waits, so an adapter that awaits it
stops reading its socket instead of buffering without bound.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import traceback
from collections import deque
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from gateway import tracing
from gateway.exceptions import GatewayError
from gateway.logcontext import event_log_context
from gateway.metrics import MetricsRegistry, registry

__all__ = [
    "DEFAULT_RETRY",
    "DeadLetter",
    "DeadLetterHook",
    "DispatcherClosed",
    "Handler",
    "KeyedDispatcher",
    "OnDone",
    "Outcome",
    "PermanentFailure",
    "RetryPolicy",
    "log_dead_letter",
]

logger = logging.getLogger("gateway.dispatch")
dead_letter_logger = logging.getLogger("gateway.deadletter")


class DispatcherClosed(GatewayError, RuntimeError):
    """The dispatcher is closed and accepts no more events."""


class PermanentFailure(Exception):
    """Base of handler errors that retrying cannot fix: the event is dead-lettered at once.

    Any exception whose class sets ``retryable = False`` is treated the same way, so an error
    class elsewhere (``gateway.mqtt.InvalidPayload``) need not import this module.
    """

    retryable = False


def is_retryable(exc: BaseException) -> bool:
    """False for errors that retrying cannot fix (``retryable = False`` on the class)."""
    return getattr(type(exc), "retryable", True) is not False


@dataclass(frozen=True)
class DeadLetter:
    """An event the application failed on every attempt, handed to the dead-letter hook."""

    protocol: str
    key: str
    scope: dict[str, Any]
    payload: bytes
    error: str
    attempts: int
    failed_at: datetime


@dataclass(frozen=True)
class Outcome:
    """How one event finished: handled by the application, or dead-lettered."""

    status: Literal["handled", "dead_lettered"]
    attempts: int
    error: Exception | None = None

    @property
    def handled(self) -> bool:
        return self.status == "handled"


Handler = Callable[[], Awaitable[None]]
OnDone = Callable[[Outcome], Awaitable[None] | None]
DeadLetterHook = Callable[[DeadLetter], Awaitable[None]]


async def log_dead_letter(letter: DeadLetter) -> None:
    """Default dead-letter hook: log the letter at ERROR on ``gateway.deadletter``."""
    args = (letter.protocol, letter.key, letter.attempts, letter.error)
    dead_letter_logger.error("dead letter: protocol=%s key=%r attempts=%d error=%s", *args)


@dataclass(frozen=True)
class RetryPolicy:
    """How often a failing event is tried, and how long to wait between tries."""

    attempts: int = 3
    initial_backoff: float = 0.5
    max_backoff: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("RetryPolicy.attempts must be at least 1")
        if min(self.initial_backoff, self.max_backoff, self.jitter) < 0 or self.multiplier < 1:
            raise ValueError("RetryPolicy backoffs and jitter must be >= 0, multiplier >= 1")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        growth = self.multiplier ** min(attempt - 1, 64)  # capped: no float overflow
        base = min(self.max_backoff, self.initial_backoff * growth)
        # Jitter spreads retries of many keys that failed together (a database blip).
        return max(0.0, base * (1 + random.uniform(-self.jitter, self.jitter)))


DEFAULT_RETRY = RetryPolicy()


@dataclass(slots=True)
class _Event:
    handler: Handler
    scope: dict[str, Any]
    payload: bytes
    on_done: OnDone | None = None
    result: asyncio.Future[Outcome] | None = None


class KeyedDispatcher:
    """Runs events in order per key, concurrently across keys, with a global in-flight bound."""

    def __init__(
        self,
        protocol: str,
        *,
        max_in_flight: int = 100,
        retry: RetryPolicy = DEFAULT_RETRY,
        dead_letter: DeadLetterHook = log_dead_letter,
        metrics: MetricsRegistry = registry,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.protocol = protocol
        self.max_in_flight = max_in_flight
        self.retry = retry
        self.dead_letter = dead_letter
        self.metrics = metrics
        # Only keys with pending events have an entry (and a worker): idle keys cost nothing.
        self._queues: dict[str, deque[_Event]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._in_flight = 0
        # Submitters waiting for a slot, first come first served; a freed slot is handed over.
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = False

    @property
    def in_flight(self) -> int:
        """Events accepted and not yet finished (queued plus running)."""
        return self._in_flight

    @property
    def idle(self) -> bool:
        return self._in_flight == 0

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def active_keys(self) -> frozenset[str]:
        """Keys with pending events, each drained by one worker task."""
        return frozenset(self._workers)

    async def submit(
        self,
        key: str,
        handler: Handler,
        *,
        scope: dict[str, Any],
        payload: bytes,
        on_done: OnDone | None = None,
    ) -> None:
        """Accept one event, waiting while ``max_in_flight`` events are unfinished."""
        await self._acquire_slot()
        self._enqueue(key, _Event(handler, scope, payload, on_done))

    def try_submit(
        self,
        key: str,
        handler: Handler,
        *,
        scope: dict[str, Any],
        payload: bytes,
        on_done: OnDone | None = None,
    ) -> bool:
        """Accept one event if a slot is free now; return False when full (answer "busy")."""
        self._check_open()
        if self._in_flight >= self.max_in_flight or self._waiters:
            return False
        self._take_slot()
        self._enqueue(key, _Event(handler, scope, payload, on_done))
        return True

    async def run(
        self, key: str, handler: Handler, *, scope: dict[str, Any], payload: bytes
    ) -> Outcome:
        """Submit one event and wait until it is handled or dead-lettered."""
        result: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        await self._acquire_slot()
        self._enqueue(key, _Event(handler, scope, payload, result=result))
        return await result

    async def drain(self, timeout: float) -> bool:
        """Wait until every accepted event has finished; False if ``timeout`` passed first."""
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    def close(self) -> None:
        """Stop accepting events; submitters still waiting for a slot get DispatcherClosed."""
        self._closed = True
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(DispatcherClosed(f"{self.protocol} dispatcher is closed"))

    async def aclose(self, timeout: float = 10.0) -> int:
        """Close, wait ``timeout`` for accepted events, cancel the rest; return how many."""
        self.close()
        if await self.drain(timeout):
            return 0
        leftover = self._in_flight
        tasks = list(self._workers.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        logger.warning("%s dispatcher closed: cancelled %d events", self.protocol, leftover)
        return leftover

    # Slots: the global in-flight bound.

    def _check_open(self) -> None:
        if self._closed:
            raise DispatcherClosed(f"{self.protocol} dispatcher is closed")

    def _take_slot(self) -> None:
        self._in_flight += 1
        self._idle.clear()
        self.metrics.inc(self.protocol, "received")
        self.metrics.set_gauge(self.protocol, "in_flight", self._in_flight)

    async def _acquire_slot(self) -> None:
        self._check_open()
        if self._in_flight < self.max_in_flight and not self._waiters:
            self._take_slot()
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._release_slot()  # the slot was handed over just before the cancel
            with suppress(ValueError):
                self._waiters.remove(waiter)
            raise
        # A handed-over slot keeps in_flight unchanged; it is ours now, unless we closed.
        if self._closed:
            self._release_slot()
            self._check_open()
        self.metrics.inc(self.protocol, "received")

    def _release_slot(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._in_flight -= 1
        self.metrics.set_gauge(self.protocol, "in_flight", self._in_flight)
        if self._in_flight == 0:
            self._idle.set()

    # Lanes: one worker task per key with pending events.

    def _enqueue(self, key: str, event: _Event) -> None:
        queue = self._queues.get(key)
        if queue is not None:
            queue.append(event)
            return
        queue = self._queues[key] = deque([event])
        # The loop's own create_task: asyncio.create_task adds two Python calls per event.
        worker = asyncio.get_running_loop().create_task(
            self._work(key, queue), name=f"dispatch:{key}"
        )
        self._workers[key] = worker

    async def _work(self, key: str, queue: deque[_Event]) -> None:
        # This task's own context: every line logged while its events run names them.
        event_log_context.set((self.protocol, key))
        try:
            while queue:
                await self._process(key, queue[0])
                queue.popleft()
                self._release_slot()
        finally:
            # No await between the empty check and here: a new event for this key either
            # landed in this queue before, or will start a fresh queue and worker after.
            del self._queues[key], self._workers[key]
            if queue:  # only when the worker was cancelled
                logger.warning("%s key %r: %d events cancelled", self.protocol, key, len(queue))
            for event in queue:
                if event.result is not None and not event.result.done():
                    event.result.set_exception(DispatcherClosed("cancelled on close"))
                self._release_slot()

    async def _process(self, key: str, event: _Event) -> None:
        if tracing.tracer is None:
            outcome = await self._attempt(key, event)
        else:
            with tracing.event_span(self.protocol, key, event.scope) as span:
                outcome = await self._attempt(key, event)
                tracing.end_event(span, outcome.attempts, outcome.status)
        if event.result is not None and not event.result.done():
            event.result.set_result(outcome)
        if event.on_done is not None:
            await self._call_on_done(event.on_done, outcome)

    async def _attempt(self, key: str, event: _Event) -> Outcome:
        # CancelledError is a BaseException: a cancelled worker is not a failed handler.
        for attempt in range(1, self.retry.attempts + 1):
            try:
                await event.handler()
            except Exception as exc:
                self._record_failure(key, attempt, exc)
                if attempt == self.retry.attempts or not is_retryable(exc):
                    await self._send_dead_letter(key, event, exc, attempt)
                    return Outcome("dead_lettered", attempt, exc)
                self.metrics.inc(self.protocol, "retried")
                await asyncio.sleep(self.retry.delay(attempt))
            else:
                self.metrics.inc(self.protocol, "handled")
                return Outcome("handled", attempt)
        raise AssertionError("unreachable: RetryPolicy.attempts >= 1")

    def _record_failure(self, key: str, attempt: int, exc: Exception) -> None:
        self.metrics.inc(self.protocol, "failed")
        if not is_retryable(exc):
            logger.error("%s key %r: not retried: %r", self.protocol, key, exc)
            return
        total = self.retry.attempts
        logger.error(
            "%s key %r: attempt %d/%d failed", self.protocol, key, attempt, total, exc_info=exc
        )

    async def _send_dead_letter(self, key: str, event: _Event, exc: Exception, n: int) -> None:
        error = repr(exc) + "\n" + "".join(traceback.format_exception(exc))
        letter = DeadLetter(
            self.protocol, key, event.scope, event.payload, error, n, datetime.now(UTC)
        )
        self.metrics.inc(self.protocol, "dead_lettered")
        try:
            await self.dead_letter(letter)
        except Exception:
            logger.exception("%s dead-letter hook failed for key %r", self.protocol, key)

    async def _call_on_done(self, on_done: OnDone, outcome: Outcome) -> None:
        try:
            result = on_done(outcome)
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception("%s on_done callback failed", self.protocol)
