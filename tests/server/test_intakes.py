"""`IntakeGate`: CONCURRENCY at work, MAX_WAITING waiting for at most WAIT, the rest refused;
the ``INTAKE`` option of every capped adapter, checked and parsed."""

from __future__ import annotations

import asyncio

import pytest

from gateway.busy import BusyHold
from gateway.intakes import IntakeBusy, IntakeGate, IntakeLimits
from gateway.options import OptionSet
from protocol_adapters.email_webhooks_options import EMAIL_WEBHOOK_OPTIONS
from protocol_adapters.smtp_options import SMTP_OPTIONS
from protocol_adapters.twilio_sms import TwilioSmsAdapter


async def hold(gate: IntakeGate, release: asyncio.Event, done: list[int], n: int) -> None:
    async with gate.turn():
        await release.wait()
        done.append(n)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_concurrency_then_waiting_then_refused_in_order() -> None:
    gate = IntakeGate(IntakeLimits(concurrency=2, max_waiting=2, wait=60.0))
    release, done = asyncio.Event(), list[int]()
    tasks = [asyncio.create_task(hold(gate, release, done, n)) for n in range(4)]
    await settle()
    assert (gate.working, gate.waiting) == (2, 2)
    with pytest.raises(IntakeBusy, match="2 requests at work and 2 waiting"):
        async with gate.turn():
            pass
    assert gate.refused == 1
    release.set()
    await asyncio.gather(*tasks)
    assert done == [0, 1, 2, 3]  # first come, first served
    assert (gate.working, gate.waiting, gate.peak) == (0, 0, 2)


async def test_a_wait_past_wait_is_refused_and_leaves_its_place() -> None:
    gate = IntakeGate(IntakeLimits(concurrency=1, max_waiting=5, wait=0.05))
    release, done = asyncio.Event(), list[int]()
    holder = asyncio.create_task(hold(gate, release, done, 0))
    await settle()
    with pytest.raises(IntakeBusy, match=r"no turn within 0\.05s"):
        async with gate.turn():
            pass
    assert (gate.working, gate.waiting, gate.refused) == (1, 0, 1)
    release.set()
    await holder
    async with gate.turn():
        assert gate.working == 1


async def test_a_waiter_cancelled_gives_its_turn_on() -> None:
    gate = IntakeGate(IntakeLimits(concurrency=1, max_waiting=5, wait=60.0))
    release, done = asyncio.Event(), list[int]()
    tasks = [asyncio.create_task(hold(gate, release, done, n)) for n in range(3)]
    await settle()
    tasks[1].cancel()
    await settle()
    assert gate.waiting == 1
    release.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert done == [0, 2]
    assert (gate.working, gate.waiting) == (0, 0)


@pytest.mark.parametrize(
    ("options", "defaults"),
    [
        (TwilioSmsAdapter.OPTIONS, IntakeLimits()),
        (EMAIL_WEBHOOK_OPTIONS, IntakeLimits(concurrency=8)),
    ],
)
def test_the_intake_option(options: OptionSet, defaults: IntakeLimits) -> None:
    assert options.parse({})["INTAKE"] == defaults
    given = {"CONCURRENCY": 2, "WAIT": 0.5}
    assert options.parse({"INTAKE": given})["INTAKE"] == IntakeLimits(
        2, defaults.max_waiting, 0.5, defaults.retry_after, defaults.busy_delay
    )
    assert defaults.busy_delay == 1.0
    assert options.parse({"INTAKE": {"BUSY_DELAY": 0}})["INTAKE"].busy_delay == 0
    bad = {"CONCURRENCY": 0, "WAIT": "soon", "RETRY_AFTER": 1.5, "BUSY_DELAY": -1, "MAX": 1}
    problems = [p for p in options.check({"INTAKE": bad}) if "INTAKE" in p]
    assert problems == [
        'OPTIONS["INTAKE"]["MAX"] is not a known key',
        'OPTIONS["INTAKE"]["CONCURRENCY"] must be an integer >= 1, got 0',
        'OPTIONS["INTAKE"]["WAIT"] must be a number of seconds > 0, got \'soon\'',
        'OPTIONS["INTAKE"]["RETRY_AFTER"] must be a whole number of seconds >= 0 (the'
        " Retry-After header), got 1.5",
        'OPTIONS["INTAKE"]["BUSY_DELAY"] must be a number of seconds from 0 to 60, got -1',
    ]
    assert [p for p in options.check({"INTAKE": 3}) if "INTAKE" in p] == [
        'OPTIONS["INTAKE"] must be a dict with CONCURRENCY, MAX_WAITING, WAIT, RETRY_AFTER,'
        " BUSY_DELAY, got 3"
    ]


def test_smtp_max_connections() -> None:
    assert SMTP_OPTIONS.parse({})["MAX_CONNECTIONS"] == 200
    assert SMTP_OPTIONS.check({"MAX_CONNECTIONS": 0}) == [
        'OPTIONS["MAX_CONNECTIONS"] must be a positive integer, got 0'
    ]


async def test_a_waiter_cancelled_just_after_its_wait_ran_out_releases_nothing() -> None:
    gate = IntakeGate(IntakeLimits(concurrency=1, max_waiting=5, wait=60.0))
    release, done = asyncio.Event(), list[int]()
    holder = asyncio.create_task(hold(gate, release, done, 0))
    waiter = asyncio.create_task(hold(gate, release, done, 1))
    await settle()
    [turn] = gate._turns
    gate._expire(turn)  # the wait runs out, and in the same step the waiter is cancelled
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert (gate.working, gate.waiting, gate.refused) == (1, 0, 1)
    release.set()
    await holder
    assert (gate.working, done) == (0, [0])


async def test_busy_answers_are_held_at_most_most_at_once() -> None:
    hold = BusyHold(0.3, most=2)
    loop = asyncio.get_running_loop()

    async def held() -> float:
        started = loop.time()
        await hold.hold()
        return loop.time() - started

    times = sorted(await asyncio.gather(held(), held(), held()))
    assert times[0] < 0.3 <= times[1]  # the third past `most` went at once, two were held
    assert hold.holding == 0
    answered: list[float] = []
    started = loop.time()
    for _ in range(3):
        hold.later(lambda: answered.append(loop.time() - started))
    assert len(answered) == 1  # past `most`: at once
    await asyncio.sleep(0.5)
    assert len(answered) == 3
    assert min(answered[1:]) >= 0.3
    assert hold.holding == 0
    off = BusyHold(0, most=2)
    off.later(lambda: answered.append(0.0))
    assert len(answered) == 4  # BUSY_DELAY 0: at once
