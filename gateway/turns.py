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
pass and none waits. Throughput under a flood stays the same (the loop still runs a heavy step
in every pass); what changes is who waits.

Only synchronous work belongs inside a turn: an ``await`` inside it holds the turn meanwhile.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

__all__ = ["LoopTurns", "loop_turn", "turns"]


class LoopTurns:
    """The turns of one event loop (`loop_turn` finds the running loop's)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._held = False
        """A step runs, or one ended in this pass (the next one waits for the next pass)."""
        self._lanes: dict[str, deque[asyncio.Future[None]]] = {}
        """Lanes with waiting steps, in the order they are served (a served lane goes last)."""
        self.steps = 0
        """Steps run (for tests and metrics)."""
        self.waited = 0
        """Steps that waited for their turn."""

    @property
    def waiting(self) -> int:
        """Steps waiting for their turn now."""
        return sum(len(queue) for queue in self._lanes.values())

    @asynccontextmanager
    async def turn(self, lane: str) -> AsyncIterator[None]:
        """Run the block's (synchronous) step when it is `lane`'s turn."""
        if self._held:
            await self._wait(lane)
        else:
            self._held = True
        self.steps += 1
        try:
            yield
        finally:
            # The next step waits for every callback already ready: call_soon runs after them.
            self._loop.call_soon(self._next)

    async def _wait(self, lane: str) -> None:
        self.waited += 1
        waiter = self._loop.create_future()
        queue = self._lanes.get(lane)
        if queue is None:
            queue = self._lanes[lane] = deque()
        queue.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._loop.call_soon(self._next)  # the turn came with the cancellation: pass it on
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

    def _next(self) -> None:
        """Give the turn to the first waiter of the next lane, or free it."""
        while self._lanes:
            lane = next(iter(self._lanes))
            queue = self._lanes.pop(lane)
            waiter = queue.popleft()
            if queue:
                self._lanes[lane] = queue  # back of the line
            if not waiter.done():
                waiter.set_result(None)
                return
        self._held = False


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
