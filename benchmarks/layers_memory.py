"""In-memory channel layers side by side: Gateway's against Django Channels' (4.3.2).

Run from the repository root: ``python benchmarks/layers_memory.py``. It measures under the
stock asyncio loop and under uvloop (the loop the gateway runs on when it is installed);
``--loop asyncio`` or ``--loop uvloop`` picks one.

a) one sender task and one receiver task pass N messages through one channel (the default
   capacity of 100, the sender yielding when the channel is full), in messages per second;
b) one group_send to a group of 1000 channels, each with a receiver already waiting, until all
   1000 have their message: the median of several repetitions.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from django.conf import settings

if not settings.configured:
    settings.configure(CHANNEL_LAYERS={})

from channels.layers import InMemoryChannelLayer as ChannelsLayer

from benchmarks.layer_workloads import FULL, MESSAGE, fan_out
from gateway.layers import InMemoryChannelLayer

logger = logging.getLogger("gateway.benchmarks")


async def one_to_one(layer: Any, count: int) -> float:
    """Messages per second from one sender task to one receiver task."""
    channel = await layer.new_channel()

    async def sender() -> None:
        for n in range(count):
            message = {**MESSAGE, "n": n}
            while True:
                try:
                    await layer.send(channel, message)
                    break
                except FULL:
                    await asyncio.sleep(0)

    async def receiver() -> None:
        for n in range(count):
            message = await layer.receive(channel)
            assert message["n"] == n

    started = time.perf_counter()
    await asyncio.gather(receiver(), sender())
    return count / (time.perf_counter() - started)


async def quietly(run: Awaitable[float], pause_gc: bool) -> float:
    """Run one measurement after a full collection, with the collector paused (as timeit does)."""
    gc.collect()
    if pause_gc:
        gc.disable()
    try:
        return await run
    finally:
        gc.enable()


async def measure(count: int, members: int, repeat: int, pause_gc: bool) -> dict[str, list[float]]:
    """Both layers in the same loop, repetitions interleaved so that noise hits both alike."""
    builders: dict[str, Callable[[], Any]] = {
        "gateway": InMemoryChannelLayer,
        "channels": ChannelsLayer,
    }
    rates: dict[str, list[float]] = {name: [] for name in builders}
    fan_out_times: dict[str, list[float]] = {name: [] for name in builders}
    for build in builders.values():
        await one_to_one(build(), count // 10)  # warm up
    for _ in range(3):
        for name, build in builders.items():
            rates[name].append(await quietly(one_to_one(build(), count), pause_gc))
    for _ in range(repeat):
        for name, build in builders.items():
            fan_out_times[name].append(await quietly(fan_out(build(), members), pause_gc))
    return {name: [max(rates[name]), statistics.median(fan_out_times[name])] for name in builders}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loop", choices=["asyncio", "uvloop", "both"], default="both")
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument(
        "--gc", action="store_true", help="leave the garbage collector on while measuring"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logger.info(
        "Python %s, %d messages, group of %d, median of %d group sends, collector %s",
        sys.version.split()[0],
        args.messages,
        args.members,
        args.repeat,
        "on" if args.gc else "paused while measuring",
    )
    logger.info("%-8s %-32s %14s %14s %8s", "loop", "benchmark", "gateway", "channels", "ratio")
    for loop_name in ["asyncio", "uvloop"] if args.loop == "both" else [args.loop]:
        run = _runner(loop_name)
        results = run(measure(args.messages, args.members, args.repeat, not args.gc))
        report(loop_name, results["gateway"], results["channels"])


def _runner(loop_name: str) -> Callable[[Any], Any]:
    if loop_name == "uvloop":
        import uvloop

        return uvloop.run
    return asyncio.run


def report(loop_name: str, ours: list[float], theirs: list[float]) -> None:
    rows = [
        ("a) 1 sender -> 1 receiver (msgs/s)", 1, "{:,.0f}"),
        ("b) group_send to all members (ms)", 1000, "{:.3f}"),
    ]
    for index, (label, scale, fmt) in enumerate(rows):
        mine, peer = ours[index] * scale, theirs[index] * scale
        logger.info(
            "%-8s %-32s %14s %14s %7.3fx",
            loop_name,
            label,
            fmt.format(mine),
            fmt.format(peer),
            mine / peer,
        )


if __name__ == "__main__":
    main()
