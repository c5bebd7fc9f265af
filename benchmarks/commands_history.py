"""The command history's Python work per 1,000 commands: function calls and writer thread CPU.

Run from the project root:

    .venv/bin/python benchmarks/commands_history.py [--store dotted.path] [--slice 5000]

Deterministic where timings are not: a store records what `mqtt_commands.py`'s one-caller load
hands it (flushes of 500 commands, sent and answered, the last 20 answers of each flush in the
next one, as at 2,000 round trips/s with a 0.25 s flush; ``--per-flush 900 --carried 100``
is the 100-caller load), in calls of --slice changes, on the benchmark's SQLite file settings
(WAL). Printed: the function calls cProfile counts in the
store's thread (the Python work that holds the GIL the event loop needs), that thread's CPU
time without the profiler (median of 3 runs; SQLite's own work included), and the top of the
profile. --store takes any `CommandStore` class, e.g. an older version of the default one
saved as a module, to compare in the same conditions. With ``--lag STORE:SLICE`` (repeatable)
it measures instead how late the event loop wakes from a 1 ms sleep while each store records
the flushes, beside a store that keeps nothing, rounds interleaved.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import functools
import os
import pstats
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PAYLOAD = b'{"set": {"valve": "open"}}'


def flushes(count: int, per_flush: int = 500, carried: int = 20) -> list[list[Any]]:
    """`count` flushes of `per_flush` commands; `carried` answers of each land in the next."""
    from gateway.mqtt_requests import CommandChange

    batches: list[list[Any]] = []
    carry: list[Any] = []
    for _ in range(count):
        batch, answers = list(carry), []
        for n in range(per_flush):
            request_id, device = uuid.uuid4().hex, f"sim-{n % 100}"
            batch.append(
                CommandChange("sent", request_id, datetime.now(UTC), device_id=device,
                              command="set", topic=f"devices/{device}/commands/set",
                              payload=PAYLOAD, timeout=10.0)
            )  # fmt: skip
            answer = CommandChange("answered", request_id, datetime.now(UTC), payload=PAYLOAD)
            (batch if n < per_flush - carried else answers).append(answer)
        batches.append(batch)
        carry = answers
    return batches


class NoStore:
    """A store that keeps nothing: the loop's lag without any history."""

    async def record(self, changes: Any) -> list[str]:
        return []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--store", default="django_app.commands.DatabaseCommandStore")
    parser.add_argument("--slice", type=int, default=5000, help="changes per record() call")
    parser.add_argument("--flushes", type=int, default=8)
    parser.add_argument("--per-flush", type=int, default=500, help="commands per flush")
    parser.add_argument("--carried", type=int, default=20, help="answers in the next flush")
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument(
        "--lag",
        action="append",
        metavar="STORE:SLICE",
        help="instead: the event loop's lag beside each store (repeatable), rounds interleaved",
    )
    args = parser.parse_args()
    directory = tempfile.mkdtemp(prefix="bench-history-")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.commands_settings")
    os.environ["BENCH_DB"] = str(Path(directory) / "history.sqlite3")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from django_app.models.devices import Device

    call_command("migrate", verbosity=0)
    Device.objects.bulk_create([Device(device_id=f"sim-{n}") for n in range(100)])
    connection.close()
    if args.lag:
        lag(args)
    else:
        profile_store(args)


def lag(args: argparse.Namespace) -> None:
    """p99 and p99.9 of a 1 ms sleep's overshoot while each store records the flushes, which
    come every 0.25 s: how long the store's thread keeps the event loop from running."""
    from django.utils.module_loading import import_string

    contenders = [("benchmarks.commands_history.NoStore", 5000)]
    contenders += [(spec.rsplit(":", 1)[0], int(spec.rsplit(":", 1)[1])) for spec in args.lag]
    results: dict[str, list[tuple[float, float]]] = {path: [] for path, _ in contenders}

    async def one(path: str, size: int) -> tuple[float, float]:
        store = import_string(path)()
        batches = flushes(args.flushes, args.per_flush, args.carried)
        overshoots: list[float] = []
        done = asyncio.Event()

        async def probe() -> None:
            while not done.is_set():
                started = time.perf_counter()
                await asyncio.sleep(0.001)
                overshoots.append(time.perf_counter() - started - 0.001)

        async def write() -> None:
            for batch in batches:
                await asyncio.sleep(0.25)
                for start in range(0, len(batch), size):
                    await store.record(batch[start : start + size])
            done.set()

        await asyncio.gather(probe(), write())
        if hasattr(store, "aclose"):
            await store.aclose()
        overshoots.sort()
        at = len(overshoots)
        return overshoots[int(at * 0.99)] * 1000, overshoots[int(at * 0.999)] * 1000

    for _ in range(3):
        for path, size in contenders:
            results[path].append(asyncio.run(one(path, size)))
    for path, rounds in results.items():
        p99 = statistics.median(r[0] for r in rounds)
        p999 = statistics.median(r[1] for r in rounds)
        each = ", ".join(f"{r[0]:.2f}" for r in rounds)
        print(f"{path}: loop lag p99 {p99:.2f} ms ({each}), p99.9 {p999:.2f} ms, median of 3")


def profile_store(args: argparse.Namespace) -> None:
    from django.utils.module_loading import import_string

    store_class = import_string(args.store)
    commands = args.flushes * args.per_flush

    def run(profile: cProfile.Profile | None) -> float:
        store = store_class()
        spent = [0.0]

        def wrap(func: Any) -> Any:
            @functools.wraps(func)
            def timed(*a: Any, **k: Any) -> Any:
                if profile is not None:
                    profile.enable()
                started = time.thread_time()
                try:
                    return func(*a, **k)
                finally:
                    spent[0] += time.thread_time() - started
                    if profile is not None:
                        profile.disable()

            return timed

        async def record_all() -> None:
            loop = asyncio.get_running_loop()
            original = loop.run_in_executor
            # The work of the store's thread, whichever executor it uses.
            loop.run_in_executor = lambda ex, f, *a: original(ex, wrap(f), *a)  # type: ignore[method-assign]
            for batch in flushes(args.flushes, args.per_flush, args.carried):
                for start in range(0, len(batch), args.slice):
                    await store.record(batch[start : start + args.slice])
            if hasattr(store, "aclose"):
                await store.aclose()

        asyncio.run(record_all())
        return spent[0]

    cpu = statistics.median(run(None) for _ in range(3))
    profile = cProfile.Profile()
    run(profile)
    stats = pstats.Stats(profile)
    calls = stats.total_calls  # type: ignore[attr-defined]
    print(f"{args.store}, {args.slice} changes per call, {commands:,} commands:")
    per_1000, per_command = calls / commands * 1000, cpu * 1e6 / commands
    print(f"  function calls in the store's thread: {calls:,} ({per_1000:,.0f} per 1,000 commands)")
    print(f"  its CPU time, no profiler: {cpu * 1000:.1f} ms ({per_command:.1f} us a command)")
    stats.sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
