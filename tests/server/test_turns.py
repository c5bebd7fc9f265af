"""Heavy steps take turns on the event loop (`gateway.turns`), on asyncio's loop and uvloop's."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import uvloop

from gateway.db import database_sync_to_async
from gateway.turns import loop_turn, rest_for, thread_call, thread_calls, turns

LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


@pytest.fixture(params=sorted(LOOPS))
def run(request: pytest.FixtureRequest) -> Callable[[Coroutine[Any, Any, Any]], Any]:
    factory = LOOPS[request.param]

    def run(coroutine: Coroutine[Any, Any, Any]) -> Any:
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(coroutine)

    return run


def compute(seconds: float) -> None:
    """Hold the thread (and the loop) computing for `seconds`."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


class Passes:
    """Counts the loop's passes: a callback that schedules itself again each time it runs."""

    def __init__(self) -> None:
        self.count = 0
        self._handle: asyncio.Handle | None = None

    def start(self) -> None:
        self._tick()

    def _tick(self) -> None:
        self.count += 1
        self._handle = asyncio.get_running_loop().call_soon(self._tick)

    def stop(self) -> None:
        assert self._handle is not None
        self._handle.cancel()


def test_a_step_alone_takes_its_turn_at_once(run: Any) -> None:
    async def main() -> tuple[int, int]:
        async with loop_turn("mail"):
            pass
        await asyncio.sleep(0.01)  # the pass ends; the turn is free again
        async with loop_turn("mail"):
            pass
        return turns().steps, turns().waited

    assert run(main()) == (2, 0)


def test_steps_ready_together_run_one_per_pass(run: Any) -> None:
    async def main() -> list[int]:
        passes = Passes()
        passes.start()
        ran_in: list[int] = []

        async def step() -> None:
            async with loop_turn("mail"):
                ran_in.append(passes.count)

        await asyncio.gather(*(step() for _ in range(10)))
        passes.stop()
        return ran_in

    ran_in = run(main())
    assert len(ran_in) == 10
    assert len(set(ran_in)) == 10, ran_in  # never two heavy steps in the same pass
    assert ran_in == sorted(ran_in)  # first come, first served within a lane


def test_other_work_waits_for_one_step_per_pass_not_for_all(run: Any) -> None:
    async def main() -> tuple[int, int]:
        done: list[int] = []

        async def heavy(number: int) -> None:
            async with loop_turn("mail"):
                compute(0.002)  # milliseconds of computing, no await
                done.append(number)

        async def probe() -> int:
            for _ in range(5):  # a request needing five passes of the loop
                await asyncio.sleep(0)
            return len(done)

        flood = [asyncio.create_task(heavy(n)) for n in range(50)]
        seen = await probe()
        await asyncio.gather(*flood)
        return seen, len(done)

    seen, total = run(main())
    assert total == 50
    # Without turns all 50 would run in the probe's first pass; with them, about one per pass.
    assert seen <= 7, seen


def test_lanes_are_served_in_turn(run: Any) -> None:
    async def main() -> list[str]:
        order: list[str] = []

        async def step(lane: str) -> None:
            async with loop_turn(lane):
                order.append(lane)

        tasks = [asyncio.create_task(step("mail")) for _ in range(10)]
        await asyncio.sleep(0)  # the first mail step runs; nine wait
        tasks.append(asyncio.create_task(step("smtp")))
        await asyncio.gather(*tasks)
        return order

    order = run(main())
    assert order.count("mail") == 10
    # Behind the mail step that had the turn and one more of the mail lane, then in turn:
    # not behind all nine waiting.
    assert order.index("smtp") <= 3, order


def test_a_cancelled_waiter_leaves_and_a_cancelled_holder_passes_the_turn_on(run: Any) -> None:
    async def main() -> tuple[list[int], int, int]:
        ran: list[int] = []

        async def step(number: int) -> None:
            async with loop_turn("mail"):
                ran.append(number)

        tasks = [asyncio.create_task(step(n)) for n in range(6)]
        await asyncio.sleep(0)  # step 0 ran; 1..5 wait
        tasks[2].cancel()  # waiting: leaves the line
        await asyncio.sleep(0)  # the turn is given to step 1 (its task not yet resumed)
        tasks[1].cancel()  # granted, then cancelled: the turn goes on to step 3
        results = await asyncio.gather(*tasks, return_exceptions=True)
        cancelled = sum(isinstance(result, asyncio.CancelledError) for result in results)
        return ran, cancelled, turns().waiting

    ran, cancelled, waiting = run(main())
    assert cancelled == 2
    assert ran == [0, 3, 4, 5]
    assert waiting == 0


def test_each_loop_has_its_own_turns() -> None:
    async def hold_and_leave() -> None:
        async with loop_turn("mail"):
            pass  # the loop ends before the turn is freed

    asyncio.run(hold_and_leave())

    async def step() -> int:
        async with loop_turn("mail"):
            return turns().waited

    assert asyncio.run(asyncio.wait_for(step(), 1)) == 0


def test_while_threads_work_a_busy_lane_rests_and_another_lane_runs_meanwhile(run: Any) -> None:
    async def main() -> tuple[list[tuple[str, float]], float]:
        loop = asyncio.get_running_loop()
        turns().rest = rest_for(0.25)  # after a step of d, 3d of rest
        ran: list[tuple[str, float]] = []

        async def step(lane: str) -> None:
            async with loop_turn(lane):
                ran.append((lane, loop.time()))
                compute(0.01)

        with thread_call():  # as while a database_sync_to_async call is pending
            started = loop.time()
            flood = [asyncio.create_task(step("mail")) for _ in range(5)]
            await asyncio.sleep(0.005)  # the first mail steps have run; the mail lane rests
            await step("sms")  # not behind the resting lane
            await asyncio.gather(*flood)
            return ran, loop.time() - started

    ran, took = run(main())
    lanes = [lane for lane, _ in ran]
    # The first mail step ran before the others were waiting (no rest after it), the second
    # with them waiting: the sms step runs while the mail lane rests, not after all of it.
    assert lanes.index("sms") <= 2, lanes
    mail = [at for lane, at in ran if lane == "mail"]
    gaps = [later - earlier for earlier, later in itertools.pairwise(mail)]
    assert min(gaps[1:]) >= 0.03, gaps  # 10 ms steps, each followed by 30 ms of rest
    assert took >= 3 * 0.04


def test_without_thread_work_a_busy_lane_does_not_rest(run: Any) -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        turns().rest = rest_for(0.01)  # a 99x rest, were there any

        async def step() -> None:
            async with loop_turn("mail"):
                compute(0.01)

        started = loop.time()
        await asyncio.gather(*(step() for _ in range(5)))
        return loop.time() - started

    assert thread_calls() == 0
    assert run(main()) < 0.5  # 50 ms of steps, not 5 s of rests


@pytest.mark.django_db
def test_a_pending_database_call_counts_as_thread_work() -> None:
    release = threading.Event()

    def blocking() -> None:
        release.wait(10)

    async def main() -> tuple[int, int]:
        call = asyncio.create_task(database_sync_to_async(blocking)())
        await asyncio.sleep(0.05)
        during = thread_calls()
        release.set()
        await call
        return during, thread_calls()

    assert asyncio.run(main()) == (1, 0)


def test_a_lone_requests_steps_do_not_rest(run: Any) -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        turns().rest = rest_for(0.01)  # a 99x rest, were there any
        started = loop.time()
        for _ in range(3):  # one request's steps, one after the other: none waits meanwhile
            async with loop_turn("mail"):
                compute(0.01)
        return loop.time() - started

    assert run(main()) < 0.5
