from __future__ import annotations

import asyncio
import logging
import random
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import UTC

import pytest

import gateway
from gateway.metrics import MetricsRegistry
from gateway.pipeline import (
    DeadLetter,
    DispatcherClosed,
    KeyedDispatcher,
    Outcome,
    RetryPolicy,
    log_dead_letter,
)

FAST = RetryPolicy(attempts=3, initial_backoff=0.001, max_backoff=0.005, jitter=0.0)
WAIT = 10.0  # generous: only there to turn a hang into a failure


def make(
    max_in_flight: int = 100,
    retry: RetryPolicy = FAST,
    dead_letter: Callable[[DeadLetter], Awaitable[None]] = log_dead_letter,
) -> tuple[KeyedDispatcher, MetricsRegistry]:
    metrics = MetricsRegistry()
    dispatcher = KeyedDispatcher(
        "test", max_in_flight=max_in_flight, retry=retry, dead_letter=dead_letter, metrics=metrics
    )
    return dispatcher, metrics


def blocker(
    gate: asyncio.Event, started: asyncio.Event | None = None
) -> Callable[[], Awaitable[None]]:
    async def handler() -> None:
        if started is not None:
            started.set()
        await gate.wait()

    return handler


async def noop() -> None:
    pass


async def settle(rounds: int = 20) -> None:
    """Give every ready task a chance to run (not a timing assumption: no sleeping)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


def test_keyed_dispatcher_is_reexported() -> None:
    name = "KeyedDispatcher"  # looked up lazily by gateway.__getattr__
    assert getattr(gateway, name) is KeyedDispatcher


async def test_same_key_order_kept_under_concurrency() -> None:
    dispatcher, _ = make()
    seen: defaultdict[str, list[int]] = defaultdict(list)
    rng = random.Random(7)

    def handler(key: str, i: int, yields: int) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            for _ in range(yields):
                await asyncio.sleep(0)
            seen[key].append(i)

        return run

    for i in range(200):
        key = f"k{i % 4}"
        await dispatcher.submit(key, handler(key, i, rng.randrange(5)), scope={}, payload=b"")
    assert await dispatcher.drain(WAIT)
    for n in range(4):
        assert seen[f"k{n}"] == list(range(n, 200, 4))


async def test_different_keys_run_concurrently() -> None:
    dispatcher, _ = make()
    gate_a, started_a, done_b = asyncio.Event(), asyncio.Event(), asyncio.Event()
    finished_a: list[str] = []

    async def handler_a() -> None:
        started_a.set()
        await gate_a.wait()
        finished_a.append("a")

    async def handler_b() -> None:
        done_b.set()

    await dispatcher.submit("a", handler_a, scope={}, payload=b"")
    await dispatcher.submit("b", handler_b, scope={}, payload=b"")
    await asyncio.wait_for(done_b.wait(), WAIT)
    assert started_a.is_set()
    assert finished_a == []  # B completed while A is still blocked
    gate_a.set()
    assert await dispatcher.drain(WAIT)
    assert finished_a == ["a"]


async def test_global_bound_blocks_submit_and_refuses_try_submit() -> None:
    dispatcher, _ = make(max_in_flight=3)
    gates = [asyncio.Event() for _ in range(3)]
    for n, gate in enumerate(gates):
        await dispatcher.submit(f"k{n}", blocker(gate), scope={}, payload=b"")
    assert dispatcher.in_flight == 3

    fourth = asyncio.create_task(dispatcher.submit("k3", noop, scope={}, payload=b""))
    await settle()
    assert not fourth.done()
    assert dispatcher.in_flight == 3
    assert dispatcher.try_submit("k4", noop, scope={}, payload=b"") is False

    gates[0].set()
    await asyncio.wait_for(fourth, WAIT)
    for gate in gates:
        gate.set()
    assert await dispatcher.drain(WAIT)
    assert dispatcher.in_flight == 0
    assert dispatcher.try_submit("k4", noop, scope={}, payload=b"") is True
    assert await dispatcher.drain(WAIT)


async def test_cancelled_waiting_submit_does_not_leak_a_slot() -> None:
    dispatcher, _ = make(max_in_flight=1)
    gate = asyncio.Event()
    await dispatcher.submit("a", blocker(gate), scope={}, payload=b"")
    waiting = asyncio.create_task(dispatcher.submit("b", noop, scope={}, payload=b""))
    await settle()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    gate.set()
    assert await dispatcher.drain(WAIT)
    assert dispatcher.in_flight == 0
    assert dispatcher.try_submit("c", noop, scope={}, payload=b"") is True
    assert await dispatcher.drain(WAIT)


async def test_retries_then_success(caplog: pytest.LogCaptureFixture) -> None:
    dispatcher, metrics = make()
    calls = 0
    outcomes: list[Outcome] = []

    async def flaky() -> None:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionError(f"try {calls}")

    with caplog.at_level(logging.ERROR, logger="gateway.dispatch"):
        await dispatcher.submit("k", flaky, scope={}, payload=b"x", on_done=outcomes.append)
        assert await dispatcher.drain(WAIT)

    assert calls == 3
    assert outcomes == [Outcome("handled", 3, None)]
    assert outcomes[0].handled
    failures = [r for r in caplog.records if r.name == "gateway.dispatch"]
    assert len(failures) == 2  # one line per failed attempt, with its traceback
    assert all(r.exc_info is not None for r in failures)
    assert (metrics.get("test", "failed"), metrics.get("test", "retried")) == (2, 2)
    assert metrics.get("test", "handled") == 1


async def test_retries_exhausted_go_to_the_dead_letter_hook() -> None:
    letters: list[DeadLetter] = []

    async def store(letter: DeadLetter) -> None:
        letters.append(letter)

    dispatcher, metrics = make(dead_letter=store)
    calls = 0

    async def always_fails() -> None:
        nonlocal calls
        calls += 1
        raise ValueError("boom")

    scope = {"type": "mqtt", "topic": "devices/1/telemetry"}
    outcome = await asyncio.wait_for(
        dispatcher.run("devices/1/telemetry", always_fails, scope=scope, payload=b"\x00data"),
        WAIT,
    )
    assert calls == 3
    assert outcome.status == "dead_lettered"
    assert outcome.attempts == 3
    assert isinstance(outcome.error, ValueError)
    [letter] = letters
    assert (letter.protocol, letter.key) == ("test", "devices/1/telemetry")
    assert letter.scope == scope
    assert letter.payload == b"\x00data"
    assert letter.attempts == 3
    assert letter.error.startswith("ValueError('boom')")
    assert "Traceback (most recent call last)" in letter.error
    assert "always_fails" in letter.error
    assert letter.failed_at.tzinfo is UTC
    assert metrics.get("test", "dead_lettered") == 1
    assert metrics.get("test", "failed") == 3
    assert metrics.get("test", "retried") == 2


async def test_later_events_of_a_key_wait_for_the_retries() -> None:
    dispatcher, _ = make()
    log: list[str] = []

    async def fails() -> None:
        log.append("first")
        raise RuntimeError("nope")

    async def second() -> None:
        log.append("second")

    async def first_done(outcome: Outcome) -> None:
        log.append(f"first {outcome.status}")

    await dispatcher.submit("k", fails, scope={}, payload=b"", on_done=first_done)
    await dispatcher.submit("k", second, scope={}, payload=b"")
    assert await dispatcher.drain(WAIT)
    assert log == ["first", "first", "first", "first dead_lettered", "second"]


async def test_a_failing_dead_letter_hook_is_survived(caplog: pytest.LogCaptureFixture) -> None:
    async def broken_hook(letter: DeadLetter) -> None:
        raise OSError("database is down")

    dispatcher, metrics = make(retry=RetryPolicy(attempts=1), dead_letter=broken_hook)

    async def fails() -> None:
        raise ValueError("bad payload")

    with caplog.at_level(logging.ERROR, logger="gateway.dispatch"):
        outcome = await asyncio.wait_for(dispatcher.run("k", fails, scope={}, payload=b""), WAIT)
        after = await asyncio.wait_for(dispatcher.run("k", noop, scope={}, payload=b""), WAIT)

    assert outcome.status == "dead_lettered"
    assert after == Outcome("handled", 1)
    assert any("dead-letter hook failed" in r.getMessage() for r in caplog.records)
    assert metrics.get("test", "dead_lettered") == 1
    assert dispatcher.active_keys == frozenset()


async def test_default_hook_logs_on_gateway_deadletter(caplog: pytest.LogCaptureFixture) -> None:
    dispatcher, _ = make(retry=RetryPolicy(attempts=1))

    async def fails() -> None:
        raise KeyError("sensor")

    with caplog.at_level(logging.ERROR, logger="gateway.deadletter"):
        await asyncio.wait_for(dispatcher.run("room/7", fails, scope={}, payload=b""), WAIT)
    [record] = [r for r in caplog.records if r.name == "gateway.deadletter"]
    assert record.levelno == logging.ERROR
    message = record.getMessage()
    assert "protocol=test" in message
    assert "'room/7'" in message
    assert "attempts=1" in message
    assert "KeyError('sensor')" in message


async def test_on_done_may_be_sync_or_async_and_a_failing_one_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dispatcher, _ = make()
    got: list[str] = []

    async def async_done(outcome: Outcome) -> None:
        got.append(f"async {outcome.status}")

    def broken_done(outcome: Outcome) -> None:
        raise RuntimeError("ack failed")

    with caplog.at_level(logging.ERROR, logger="gateway.dispatch"):
        await dispatcher.submit(
            "k", noop, scope={}, payload=b"", on_done=lambda o: got.append("sync")
        )
        await dispatcher.submit("k", noop, scope={}, payload=b"", on_done=async_done)
        await dispatcher.submit("k", noop, scope={}, payload=b"", on_done=broken_done)
        await dispatcher.submit("k", noop, scope={}, payload=b"", on_done=async_done)
        assert await dispatcher.drain(WAIT)
    assert got == ["sync", "async handled", "async handled"]
    assert any("on_done callback failed" in r.getMessage() for r in caplog.records)


async def test_drain_reports_whether_everything_finished() -> None:
    dispatcher, _ = make()
    gate = asyncio.Event()
    assert (dispatcher.idle, dispatcher.in_flight) == (True, 0)
    assert await dispatcher.drain(0.01) is True
    await dispatcher.submit("k", blocker(gate), scope={}, payload=b"")
    await dispatcher.submit("k", noop, scope={}, payload=b"")
    assert await dispatcher.drain(0.05) is False
    assert (dispatcher.idle, dispatcher.in_flight) == (False, 2)
    gate.set()
    assert await dispatcher.drain(WAIT) is True
    assert (dispatcher.idle, dispatcher.in_flight) == (True, 0)


async def test_aclose_cancels_leftovers_and_refuses_new_events(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dispatcher, metrics = make(max_in_flight=2)
    never = asyncio.Event()
    started = asyncio.Event()
    cancelled: list[str] = []

    async def stuck() -> None:
        started.set()
        try:
            await never.wait()
        except asyncio.CancelledError:
            cancelled.append("stuck")
            raise

    await dispatcher.submit("a", stuck, scope={}, payload=b"")
    await dispatcher.submit("a", noop, scope={}, payload=b"")  # queued behind it
    blocked_run = asyncio.create_task(dispatcher.run("b", noop, scope={}, payload=b""))
    blocked_submit = asyncio.create_task(dispatcher.submit("c", noop, scope={}, payload=b""))
    await asyncio.wait_for(started.wait(), WAIT)
    await settle()
    assert not blocked_run.done()
    assert not blocked_submit.done()

    with caplog.at_level(logging.WARNING, logger="gateway.dispatch"):
        count = await asyncio.wait_for(dispatcher.aclose(timeout=0.05), WAIT)

    assert dispatcher.closed
    assert cancelled == ["stuck"]
    assert count == 2
    assert any("cancelled 2 events" in r.getMessage() for r in caplog.records)
    for blocked in (blocked_run, blocked_submit):  # waiting for a slot when closed
        with pytest.raises(DispatcherClosed):
            await blocked
    assert dispatcher.in_flight == 0
    assert dispatcher.active_keys == frozenset()
    assert metrics.get("test", "failed") == 0  # a cancellation is not a handler failure
    with pytest.raises(DispatcherClosed):
        await dispatcher.submit("a", noop, scope={}, payload=b"")
    with pytest.raises(DispatcherClosed):
        dispatcher.try_submit("a", noop, scope={}, payload=b"")
    with pytest.raises(RuntimeError):
        await dispatcher.run("a", noop, scope={}, payload=b"")


async def test_run_waiting_on_a_cancelled_event_gets_dispatcher_closed() -> None:
    dispatcher, _ = make()
    never = asyncio.Event()
    await dispatcher.submit("k", blocker(never), scope={}, payload=b"")
    pending = asyncio.create_task(dispatcher.run("k", noop, scope={}, payload=b""))
    await settle()
    assert await asyncio.wait_for(dispatcher.aclose(timeout=0.01), WAIT) == 2
    with pytest.raises(DispatcherClosed):
        await asyncio.wait_for(pending, WAIT)


async def test_aclose_when_idle_cancels_nothing() -> None:
    dispatcher, _ = make()
    await dispatcher.submit("k", noop, scope={}, payload=b"")
    assert await dispatcher.aclose(timeout=WAIT) == 0
    with pytest.raises(DispatcherClosed, match="closed"):
        await dispatcher.submit("k", noop, scope={}, payload=b"")


async def test_idle_keys_leave_no_worker_tasks_behind() -> None:
    dispatcher, _ = make(max_in_flight=50)
    gate = asyncio.Event()
    await dispatcher.submit("held", blocker(gate), scope={}, payload=b"")
    for i in range(2000):
        await dispatcher.submit(f"devices/{i}/telemetry", noop, scope={}, payload=b"")
    while dispatcher.in_flight > 1:  # the last topics' workers finish without any gate
        await asyncio.sleep(0)
    assert dispatcher.active_keys == frozenset({"held"})
    gate.set()
    assert await dispatcher.drain(WAIT)
    assert dispatcher.active_keys == frozenset()
    await settle()  # let finished worker tasks be reaped by the loop
    leftovers = [t for t in asyncio.all_tasks() if t.get_name().startswith("dispatch:")]
    assert leftovers == []


async def test_one_worker_per_busy_key() -> None:
    dispatcher, _ = make()
    gate = asyncio.Event()
    for _ in range(10):
        await dispatcher.submit("k", blocker(gate), scope={}, payload=b"")
    workers = [t for t in asyncio.all_tasks() if t.get_name() == "dispatch:k"]
    assert len(workers) == 1
    assert dispatcher.in_flight == 10
    gate.set()
    assert await dispatcher.drain(WAIT)


async def test_metrics_after_a_mixed_run() -> None:
    dispatcher, metrics = make(max_in_flight=10)
    gate = asyncio.Event()
    attempts: defaultdict[str, int] = defaultdict(int)

    def failing_times(key: str, failures: int) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            attempts[key] += 1
            if attempts[key] <= failures:
                raise RuntimeError(key)

        return run

    await dispatcher.submit("held", blocker(gate), scope={}, payload=b"")
    await dispatcher.submit("ok1", noop, scope={}, payload=b"")
    await dispatcher.submit("ok2", noop, scope={}, payload=b"")
    await dispatcher.submit("once", failing_times("once", 1), scope={}, payload=b"")
    await dispatcher.submit("dead", failing_times("dead", 99), scope={}, payload=b"")
    assert metrics.get("test", "received") == 5
    assert metrics.gauge("test", "in_flight") >= 1  # "held" is still running
    assert dispatcher.try_submit("ok3", noop, scope={}, payload=b"")
    gate.set()
    assert await dispatcher.drain(WAIT)

    assert metrics.get("test", "received") == 6
    assert metrics.get("test", "handled") == 5  # held, ok1, ok2, ok3, once
    assert metrics.get("test", "failed") == 1 + 3
    assert metrics.get("test", "retried") == 1 + 2
    assert metrics.get("test", "dead_lettered") == 1
    assert metrics.get("test", "rejected") == 0
    assert metrics.gauge("test", "in_flight") == 0
    assert 'gateway_events_handled_total{protocol="test"} 5' in metrics.render()


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
async def test_random_interleavings_keep_order_and_bound(seed: int) -> None:
    rng = random.Random(seed)
    bound = rng.randint(1, 6)
    dispatcher, metrics = make(max_in_flight=bound)
    keys = [f"key{n}" for n in range(rng.randint(1, 8))]
    submitted: defaultdict[str, list[int]] = defaultdict(list)
    handled: defaultdict[str, list[int]] = defaultdict(list)
    running = 0
    peak = 0
    peak_in_flight = 0
    fail_first = {i for i in range(300) if rng.random() < 0.1}
    tried: set[int] = set()

    def handler(key: str, i: int, yields: int) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            nonlocal running, peak, peak_in_flight
            running += 1
            peak = max(peak, running)
            peak_in_flight = max(peak_in_flight, dispatcher.in_flight)
            try:
                for _ in range(yields):
                    await asyncio.sleep(0)
                if i in fail_first and i not in tried:
                    tried.add(i)
                    raise RuntimeError("transient")
                handled[key].append(i)
            finally:
                running -= 1

        return run

    async def producer(ids: list[int]) -> None:
        for i in ids:
            key = rng.choice(keys)
            work = handler(key, i, rng.randrange(6))
            if rng.random() < 0.3 and dispatcher.try_submit(key, work, scope={}, payload=b""):
                submitted[key].append(i)
                continue
            await dispatcher.submit(key, work, scope={}, payload=b"")
            # No await between the enqueue and this line: this is the submission order.
            submitted[key].append(i)
            if rng.random() < 0.5:
                await asyncio.sleep(0)

    ids = list(range(300))
    await asyncio.wait_for(asyncio.gather(*(producer(ids[n::3]) for n in range(3))), WAIT)
    assert await dispatcher.drain(WAIT)

    assert dict(handled) == dict(submitted)
    assert sum(len(v) for v in handled.values()) == 300
    assert peak <= bound
    assert peak_in_flight <= bound
    assert metrics.get("test", "handled") == 300
    assert metrics.get("test", "retried") == len(fail_first)
    assert dispatcher.active_keys == frozenset()


def test_retry_policy_delay_grows_and_is_capped() -> None:
    policy = RetryPolicy(initial_backoff=0.5, max_backoff=3.0, multiplier=2.0, jitter=0.0)
    assert [policy.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert policy.delay(10_000) == 3.0
    jittery = RetryPolicy(initial_backoff=1.0, jitter=0.1)
    assert all(0.9 <= jittery.delay(1) <= 1.1 for _ in range(100))


@pytest.mark.parametrize(
    "kwargs",
    [{"attempts": 0}, {"initial_backoff": -1.0}, {"jitter": -0.1}, {"multiplier": 0.5}],
)
def test_retry_policy_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="RetryPolicy"):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_max_in_flight_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_in_flight"):
        KeyedDispatcher("test", max_in_flight=0)


# --- non-retryable failures ------------------------------------------------------------------


class _BadInput(Exception):
    retryable = False


async def _dead_letter_on_first_failure(error: Exception) -> None:
    letters: list[DeadLetter] = []

    async def store(letter: DeadLetter) -> None:
        letters.append(letter)

    dispatcher, metrics = make(dead_letter=store)
    calls = 0

    async def handler() -> None:
        nonlocal calls
        calls += 1
        raise error

    outcome = await dispatcher.run("k", handler, scope={"type": "test"}, payload=b"x")
    assert (outcome.status, outcome.attempts, outcome.error) == ("dead_lettered", 1, error)
    assert calls == 1
    assert [letter.attempts for letter in letters] == [1]
    assert metrics.get("test", "retried") == 0
    assert metrics.get("test", "dead_lettered") == 1


async def test_permanent_failure_is_dead_lettered_without_retry() -> None:
    from gateway.pipeline import PermanentFailure

    await _dead_letter_on_first_failure(PermanentFailure("cannot be fixed by retrying"))


async def test_class_attribute_retryable_false_is_not_retried() -> None:
    await _dead_letter_on_first_failure(_BadInput("bad"))


async def test_invalid_mqtt_payload_is_not_retried() -> None:
    from gateway.mqtt import InvalidPayload

    await _dead_letter_on_first_failure(InvalidPayload("not JSON"))
