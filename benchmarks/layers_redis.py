"""Redis channel layers side by side: Gateway's against channels_redis 4.3 (both of its layers).

Run from the repository root: ``python benchmarks/layers_redis.py``. It starts its own
redis-server (no persistence) on a free port, runs every layer against it on uvloop (the
gateway's loop), and measures:

a) one sender task and one receiver task pass messages through one channel, in messages/s;
b) send -> receive latency of single messages (a receiver already waiting): p50 and p99;
c) one group_send to a group of 1000 channels, each with a receiver already waiting, until all
   1000 have the message (median of several);
d) `redis-benchmark -c 1 -n 100000 -t set,lpush -q` against the same server: what one client
   doing one round trip at a time can do at all, the physical reference for a).

The in-memory layer runs a) to c) too, with no Redis at all: the floor asyncio sets (c above
all: waking 1000 receiver tasks costs the same whatever the layer).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from django.conf import settings

if not settings.configured:
    settings.configure(CHANNEL_LAYERS={})

from channels_redis.core import RedisChannelLayer as ChannelsRedisLayer
from channels_redis.pubsub import RedisPubSubChannelLayer as ChannelsPubSubLayer

from benchmarks.layer_workloads import FULL, MESSAGE, fan_out
from gateway.layers.memory import InMemoryChannelLayer
from gateway.layers.redis import RedisChannelLayer
from tests.integration.redis import running_redis

logger = logging.getLogger("gateway.benchmarks")


async def one_to_one(layer: Any, seconds: float) -> float:
    """Messages per second from one sender task to one receiver task, for about `seconds`."""
    channel = await layer.new_channel()
    stop = time.perf_counter() + seconds
    sent = 0

    async def sender() -> None:
        nonlocal sent
        while time.perf_counter() < stop:
            try:
                await layer.send(channel, {**MESSAGE, "n": sent})
            except FULL:
                await asyncio.sleep(0.001)
                continue
            sent += 1
        # An end marker: without it a receiver that caught up would wait for ever.
        while True:
            try:
                await layer.send(channel, {**MESSAGE, "n": -1})
                return
            except FULL:
                await asyncio.sleep(0.001)

    async def receiver() -> int:
        received = 0
        while (message := await layer.receive(channel))["n"] >= 0:
            assert message["n"] == received, (message, received)
            received += 1
        return received

    started = time.perf_counter()
    receiving = asyncio.create_task(receiver())
    await sender()
    received = await asyncio.wait_for(receiving, 60)
    return received / (time.perf_counter() - started)


async def latencies(layer: Any, count: int) -> list[float]:
    """Seconds from send() to the waiting receiver having the message, one at a time."""
    channel = await layer.new_channel()
    samples = []
    for n in range(count):
        receiving = asyncio.ensure_future(layer.receive(channel))
        await asyncio.sleep(0)  # the receiver is waiting
        started = time.perf_counter()
        await layer.send(channel, {**MESSAGE, "n": n})
        await receiving
        samples.append(time.perf_counter() - started)
    return samples


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def measure(url: str, seconds: float, samples: int, members: int, repeat: int) -> Any:
    builders: dict[str, Callable[[], Any]] = {
        "gateway": lambda: RedisChannelLayer(hosts=[url], prefix="bench-gw"),
        "channels_redis": lambda: ChannelsRedisLayer(hosts=[url], prefix="bench-core"),
        "channels_redis pubsub": lambda: ChannelsPubSubLayer(hosts=[url], prefix="bench-ps"),
        # No Redis at all: what asyncio alone costs, the floor of every figure above it.
        "in-memory (no Redis)": InMemoryChannelLayer,
    }
    results: dict[str, dict[str, float]] = {}
    for name, build in builders.items():
        layer = build()
        await one_to_one(layer, 0.5)  # warm up: connections, scripts
        gc.collect()
        rate = max([await one_to_one(layer, seconds) for _ in range(2)])
        times = await latencies(layer, samples)
        fan = [await fan_out(layer, members, f"bench{n}", settle=0.5) for n in range(repeat)]
        results[name] = {
            "rate": rate,
            "p50": percentile(times, 0.5),
            "p99": percentile(times, 0.99),
            "fan_out": statistics.median(fan),
        }
        await layer.flush()
        close = getattr(layer, "close", None) or getattr(layer, "close_pools", None)
        if close is not None:
            await close()
        logger.info("%s done", name)
    return results


def redis_benchmark(port: int) -> dict[str, float]:
    """Requests per second of `redis-benchmark -c 1 -n 100000 -t set,lpush -q`."""
    binary = shutil.which("redis-benchmark")
    if binary is None:
        return {}
    argv = [binary, "-p", str(port), "-c", "1", "-n", "100000", "-t", "set,lpush", "-q"]
    output = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    found = re.findall(r"(SET|LPUSH): ([\d.]+) requests per second", output.replace("\r", "\n"))
    return {name: float(rate) for name, rate in found}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per 1:1 throughput run")
    parser.add_argument("--samples", type=int, default=2000, help="latency samples")
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=7, help="group sends, median taken")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import uvloop

    with running_redis() as server:
        results = uvloop.run(
            measure(server.url, args.seconds, args.samples, args.members, args.repeat)
        )
        reference = redis_benchmark(server.port)
    report(results, reference)


def report(results: dict[str, dict[str, float]], reference: dict[str, float]) -> None:
    ours = results["gateway"]
    core = results["channels_redis"]
    pubsub = results["channels_redis pubsub"]
    logger.info("")
    logger.info(
        "%-24s %12s %10s %10s %14s", "layer", "1:1 msgs/s", "p50 ms", "p99 ms", "fan-out ms"
    )
    for name, row in results.items():
        logger.info(
            "%-24s %12s %10.3f %10.3f %14.2f",
            name,
            f"{row['rate']:,.0f}",
            row["p50"] * 1000,
            row["p99"] * 1000,
            row["fan_out"] * 1000,
        )
    best_fan = min(core["fan_out"], pubsub["fan_out"])
    logger.info("")
    logger.info(
        "a) 1:1 rate vs RedisChannelLayer:  %6.1fx (target >= 10x)", ours["rate"] / core["rate"]
    )
    logger.info(
        "a) 1:1 rate vs PubSub layer:       %6.2fx (target >= 2x)", ours["rate"] / pubsub["rate"]
    )
    logger.info(
        "b) p99 vs RedisChannelLayer:       %6.3fx (target <= 0.5x)", ours["p99"] / core["p99"]
    )
    logger.info(
        "c) fan-out vs best channels_redis: %6.3fx (target <= 0.5x)", ours["fan_out"] / best_fan
    )
    floor = results["in-memory (no Redis)"]["fan_out"]
    logger.info(
        "c) floor: the in-memory layer's fan-out %.2f ms = %.3fx best channels_redis",
        floor * 1000,
        floor / best_fan,
    )
    for command, rate in reference.items():
        logger.info(
            "d) redis-benchmark -c 1 %-6s %10s req/s; ours 1:1 = %.2f of it",
            command,
            f"{rate:,.0f}",
            ours["rate"] / rate,
        )


if __name__ == "__main__":
    main()
