"""`gateway.logins.LoginGate`: checks bounded at once, fair between addresses, failures limited.

Each attempt here is a real awaitable the test releases when it chooses, so the order of turns
is observed as it happens, without any clock.
"""

from __future__ import annotations

import asyncio

import pytest

from gateway.logins import LoginGate, LoginLimits, LoginRefused
from gateway.options import OptionSet, logins_option


class Attempts:
    """Attempts that start when the gate gives their turn and end when the test says."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.running = 0
        self.peak = 0
        self._gates: dict[str, asyncio.Event] = {}
        self._answers: dict[str, str | None] = {}

    def attempt(self, name: str, answer: str | None = None) -> asyncio.Event:
        self._gates[name] = asyncio.Event()
        self._answers[name] = answer
        return self._gates[name]

    def finish(self, name: str) -> None:
        self._gates[name].set()

    def finish_all(self) -> None:
        for event in self._gates.values():
            event.set()

    async def run(self, name: str) -> str | None:
        self.started.append(name)
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await self._gates[name].wait()
        finally:
            self.running -= 1
        return self._answers[name]


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def start(gate: LoginGate, attempts: Attempts, address: str, name: str) -> asyncio.Task[object]:
    attempts.attempt(name)
    return asyncio.create_task(gate.check(address, lambda: attempts.run(name)))


async def test_checks_run_at_most_concurrency_at_once_and_addresses_take_turns() -> None:
    gate, attempts = LoginGate(LoginLimits(concurrency=2, max_per_address=50)), Attempts()
    flood = [start(gate, attempts, "10.0.0.9", f"flood-{n}") for n in range(10)]
    await settle()
    valid = start(gate, attempts, "10.0.0.1", "valid")
    await settle()
    assert attempts.started == ["flood-0", "flood-1"]
    assert (gate.checking, gate.waiting) == (2, 9)
    for n in range(2):
        attempts.finish(f"flood-{n}")
        await settle()
    # The flood's queue had its turn, then the other address: valid runs third, not eleventh.
    assert attempts.started[:4] == ["flood-0", "flood-1", "flood-2", "valid"]
    attempts.finish_all()
    await asyncio.gather(valid, *flood)
    assert attempts.peak == 2
    assert (gate.checking, gate.waiting) == (0, 0)


async def test_past_max_per_address_or_max_waiting_a_login_is_refused_as_busy() -> None:
    gate = LoginGate(LoginLimits(concurrency=1, max_waiting=3, max_per_address=2))
    attempts = Attempts()
    held = [start(gate, attempts, "10.0.0.9", f"a-{n}") for n in range(2)]
    await settle()
    with pytest.raises(LoginRefused) as refused:
        await gate.check("10.0.0.9", lambda: attempts.run("never"))
    assert refused.value.reason == "busy"
    held += [start(gate, attempts, f"10.0.1.{n}", f"b-{n}") for n in range(2)]
    await settle()
    assert gate.waiting == 3
    with pytest.raises(LoginRefused):
        await gate.check("10.0.2.1", lambda: attempts.run("never"))
    assert "never" not in attempts.started
    assert gate.refused["busy"] == 2
    attempts.finish_all()
    await asyncio.gather(*held)


async def test_an_address_past_max_failures_is_refused_unchecked_until_the_window_passes() -> None:
    gate = LoginGate(LoginLimits(max_failures=3, failure_window=0.2))
    checked: list[str] = []

    async def wrong() -> str | None:
        checked.append("wrong")
        return None

    for _ in range(3):
        assert await gate.check("10.0.0.9", wrong) is None
    with pytest.raises(LoginRefused) as refused:
        await gate.check("10.0.0.9", wrong)
    assert refused.value.reason == "limited"
    assert len(checked) == 3  # refused without a check
    assert await gate.check("10.0.0.1", wrong) is None  # another address counts on its own
    while gate.failures("10.0.0.9"):
        await asyncio.sleep(0.05)
    assert await gate.check("10.0.0.9", wrong) is None


async def test_a_cancelled_waiter_gives_its_turn_to_the_next() -> None:
    gate, attempts = LoginGate(LoginLimits(concurrency=1)), Attempts()
    first = start(gate, attempts, "10.0.0.1", "first")
    gone = start(gate, attempts, "10.0.0.2", "gone")
    last = start(gate, attempts, "10.0.0.3", "last")
    await settle()
    gone.cancel()
    attempts.finish("first")
    attempts.finish("last")
    await asyncio.gather(first, last)
    assert attempts.started == ["first", "last"]
    assert (gate.checking, gate.waiting) == (0, 0)


def test_the_logins_option_is_checked_and_parsed() -> None:
    options = OptionSet(logins_option())
    assert options.check({"LOGINS": {"CONCURRENCY": 3, "FAILURE_WINDOW": 30}}) == []
    errors = options.check({"LOGINS": {"CONCURRENCY": 0, "MAX_FAILURES": "ten", "OTHER": 1}})
    assert errors == [
        'OPTIONS["LOGINS"]["OTHER"] is not a known key',
        'OPTIONS["LOGINS"]["CONCURRENCY"] must be an integer 1-8 (the hashing threads), got 0',
        'OPTIONS["LOGINS"]["MAX_FAILURES"] must be a positive integer, got \'ten\'',
    ]
    parsed = options.parse({"LOGINS": {"MAX_FAILURES": 4}})["LOGINS"]
    assert parsed == LoginLimits(max_failures=4)
    assert parsed.busy_delay == 1.0
    held = options.parse({"LOGINS": {"BUSY_DELAY": 0.25, "MAX_WAITING": 7}})["LOGINS"]
    gate = LoginGate(held)
    assert (gate.busy_hold.delay, gate.busy_hold.most) == (0.25, 7)
    assert options.check({"LOGINS": {"BUSY_DELAY": -1}}) == [
        'OPTIONS["LOGINS"]["BUSY_DELAY"] must be a number of seconds from 0 to 60, got -1'
    ]


async def test_a_caller_gone_during_its_check_keeps_the_turn_until_the_check_ends() -> None:
    gate, attempts = LoginGate(LoginLimits(concurrency=1)), Attempts()
    gone = start(gate, attempts, "10.0.0.1", "gone")
    after = start(gate, attempts, "10.0.0.2", "after")
    await settle()
    gone.cancel()
    await settle()
    assert attempts.started == ["gone"]  # the check still runs: no other starts beside it
    assert gate.checking == 1
    attempts.finish("gone")
    await settle()
    assert attempts.started == ["gone", "after"]
    attempts.finish("after")
    await after
    assert attempts.peak == 1
