"""Heavy steps on the event loop take turns: one per pass of the loop, lanes served in turn.

A step that computes for milliseconds without awaiting (parsing a mail, writing it out as
bytes) holds the event loop that long. When a flood makes many such steps ready at once, the
loop runs all of them in one pass, and everything else that is ready (another intake's request,
a device's CONNACK) waits behind their sum: 100 mails in flight at 3 ms of parsing each keep
every other callback waiting 0.3 s per pass, and a request needs several passes.

A step run inside `loop_turn` runs one per pass: the next one starts once every callback that
was ready when the previous one ended has run. The rest of the loop's work then waits for at
most one heavy step per pass, whatever the flood. Lanes (an adapter's name) are served in
turn, so one adapter's queue of steps delays another adapter's step by one step, not by the
whole queue. A step alone pays nothing: the turn is taken at once when no step ran in this
pass, none waits and its lane has rested.

While threads have work pending (a `database_sync_to_async` call, a Django view on
`gateway.request_threads`), a lane with more steps waiting rests after each one, so that its
steps take at most a share of the loop's time (``GATEWAY["LOOP_SHARE"]``, 0.25: after a step
of 2 ms, 6 ms of rest): passes one after the other each with a heavy step leave nothing for
the threads that need the GIL back from the loop (the database thread, Django's views: each
waits up to the switch interval, 5 ms, every time it gave the GIL up), and an adapter parsing
mail as fast as it comes would take it all.
Another lane's step may run while one rests. The cost is that adapter's throughput under a
flood while threads work beside it; alone, its steps run back to back.

Only synchronous work belongs inside a turn: an ``await`` inside it holds the turn meanwhile.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

__all__ = [
    "DEFAULT_SHARE",
    "LoopTurns",
    "loop_turn",
    "rest_for",
    "thread_call",
    "thread_calls",
    "turns",
    "when_thread_calls_end",
]

DEFAULT_SHARE = 0.25
"""``GATEWAY["LOOP_SHARE"]``'s default."""


def rest_for(share: float) -> float:
    """How long a lane rests after a step, in multiples of the step, to take `share` at most."""
    return 1 / share - 1


class LoopTurns:
    """The turns of one event loop (`loop_turn` finds the running loop's)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, share: float = DEFAULT_SHARE) -> None:
        self._loop = loop
        self.rest = rest_for(share)
        """A lane rests this many times its last step's duration before its next step."""
        self._busy = False
        """A step runs, or one ended in this pass (the next one waits for the next pass)."""
        self._lanes: dict[str, deque[asyncio.Future[None]]] = {}
        """Lanes with waiting steps, in the order they are served (a served lane goes last)."""
        self._rested: dict[str, float] = {}
        """Loop time from which each lane that ran a step may run its next."""
        self._next_call: asyncio.Handle | None = None
        self.thread_work: list[Callable[[], int]] = []
        """How many calls other pools (Django's request threads) have running or waiting."""
        self.steps = 0
        """Steps run (for tests and metrics)."""
        self.waited = 0
        """Steps that waited for their turn."""

    def _threads_wait(self) -> bool:
        """Whether a thread has work pending (the rest would give it the GIL)."""
        return _thread_calls > 0 or any(pending() for pending in self.thread_work)

    @property
    def waiting(self) -> int:
        """Steps waiting for their turn now."""
        return sum(len(queue) for queue in self._lanes.values())

    @asynccontextmanager
    async def turn(self, lane: str) -> AsyncIterator[None]:
        """Run the block's (synchronous) step when it is `lane`'s turn."""
        if self._busy or self._lanes or not self._has_rested(lane):
            await self._wait(lane)
        else:
            self._busy = True
        self.steps += 1
        started = time.perf_counter()
        try:
            yield
        finally:
            spent = time.perf_counter() - started
            if self.rest > 0 and lane in self._lanes and self._threads_wait():
                self._rested[lane] = self._loop.time() + spent * self.rest
            # The next step waits for every callback already ready: call_soon runs after them.
            self._schedule_next()

    def _has_rested(self, lane: str) -> bool:
        until = self._rested.get(lane)
        if until is None:
            return True
        if self._loop.time() >= until:
            del self._rested[lane]  # forgotten once rested: the dict holds only recent lanes
            return True
        return False

    async def _wait(self, lane: str) -> None:
        self.waited += 1
        waiter = self._loop.create_future()
        queue = self._lanes.get(lane)
        if queue is None:
            queue = self._lanes[lane] = deque()
        queue.append(waiter)
        if not self._busy:  # every waiting lane is resting: this one may be ready now
            self._schedule_next()
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._schedule_next()  # the turn came with the cancellation: pass it on
            else:
                self._forget(lane, waiter)
            raise

    def _forget(self, lane: str, waiter: asyncio.Future[None]) -> None:
        queue = self._lanes.get(lane)
        if queue is None:
            return
        try:
            queue.remove(waiter)
        except ValueError:
            return
        if not queue:
            del self._lanes[lane]

    def _schedule_next(self, at: float | None = None) -> None:
        if self._next_call is not None:
            self._next_call.cancel()
        if at is None:
            self._next_call = self._loop.call_soon(self._next)
        else:
            self._next_call = self._loop.call_at(at, self._next)

    def _next(self) -> None:
        """Give the turn to the first waiter of the next rested lane, or free it."""
        self._next_call = None
        for lane in list(self._lanes):
            if not self._has_rested(lane):
                continue
            queue = self._lanes.pop(lane)
            waiter = queue.popleft()
            if queue:
                self._lanes[lane] = queue  # back of the line
            if not waiter.done():
                self._busy = True
                waiter.set_result(None)
                return
        self._busy = False
        if self._lanes:  # all resting: wake up when the first one has rested
            self._schedule_next(min(self._rested[lane] for lane in self._lanes))


_thread_calls = 0
"""Calls to `database_sync_to_async` functions pending (`thread_call`), on every loop."""


def thread_calls() -> int:
    """Calls to `database_sync_to_async` functions pending now, on every loop."""
    return _thread_calls


_when_none: list[Callable[[], None]] = []
"""Called each time the pending `database_sync_to_async` calls drop to none."""


def when_thread_calls_end(callback: Callable[[], None]) -> Callable[[], None]:
    """Calls `callback` each time no `database_sync_to_async` call is pending any more (on the
    thread of the loop whose call ended); returns the function that stops it."""
    _when_none.append(callback)
    return lambda: _when_none.remove(callback) if callback in _when_none else None


class thread_call:
    """Counts a call the event loop waits on a thread for, while the block runs."""

    def __enter__(self) -> None:
        global _thread_calls
        _thread_calls += 1

    def __exit__(self, *exc_info: object) -> None:
        global _thread_calls
        _thread_calls -= 1
        if not _thread_calls:
            for callback in tuple(_when_none):
                callback()


_TURNS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopTurns] = (
    weakref.WeakKeyDictionary()
)


def turns() -> LoopTurns:
    """The running loop's `LoopTurns`."""
    loop = asyncio.get_running_loop()
    found = _TURNS.get(loop)
    if found is None:
        found = _TURNS[loop] = LoopTurns(loop)
    return found


def loop_turn(lane: str) -> AbstractAsyncContextManager[None]:
    """``async with loop_turn(lane):`` runs the block's heavy step in its turn (see module)."""
    return turns().turn(lane)
