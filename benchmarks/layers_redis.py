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

With `--rounds N` every layer and redis-benchmark run N times, the layers' order rotating
from round to round, so that a change in the host's speed hits them alike; each round gives
its ratios and the medians are reported. Beside the wall-clock figures, the CPU time per
message of a) is reported for this process (`time.process_time()`, and the part of it spent
in the kernel, from `os.times()`) and for redis-server (its utime + stime from /proc): what a
message costs, much less dependent on the host's speed than the rates.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
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
from tests.integration.redis import RedisServer, running_redis

logger = logging.getLogger("gateway.benchmarks")


async def one_to_one(layer: Any, seconds: float) -> float:
    """Messages per second from one sender task to one receiver task, for about `seconds`."""
    rate, _ = await counted_one_to_one(layer, seconds)
    return rate


async def counted_one_to_one(layer: Any, seconds: float) -> tuple[float, int]:
    """`one_to_one`'s rate, and how many messages it passed."""
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
    return received / (time.perf_counter() - started), received


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


def server_cpu(pid: int | None) -> float:
    """CPU seconds (user + system) a process has used so far; 0 where /proc cannot tell."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


LAYERS: dict[str, Callable[[str], Any]] = {
    "gateway": lambda url: RedisChannelLayer(hosts=[url], prefix="bench-gw"),
    "channels_redis": lambda url: ChannelsRedisLayer(hosts=[url], prefix="bench-core"),
    "channels_redis pubsub": lambda url: ChannelsPubSubLayer(hosts=[url], prefix="bench-ps"),
    # No Redis at all: what asyncio alone costs, the floor of every figure above it.
    "in-memory (no Redis)": lambda url: InMemoryChannelLayer(),
}


async def measure_layer(
    name: str, url: str, pid: int | None, seconds: float, samples: int, members: int, repeat: int
) -> dict[str, float]:
    """Every figure of one layer: a) to c) and the CPU per message of a)."""
    layer = LAYERS[name](url)
    await one_to_one(layer, 0.5)  # warm up: connections, scripts
    gc.collect()
    cpu, system = time.process_time(), os.times().system
    server, count, rates = server_cpu(pid), 0, []
    for _ in range(2):
        rate, passed = await counted_one_to_one(layer, seconds)
        rates.append(rate)
        count += passed
    cpu, system = time.process_time() - cpu, os.times().system - system
    server = server_cpu(pid) - server
    times = await latencies(layer, samples)
    fan = [await fan_out(layer, members, f"bench{n}", settle=0.5) for n in range(repeat)]
    await layer.flush()
    close = getattr(layer, "close", None) or getattr(layer, "close_pools", None)
    if close is not None:
        await close()
    return {
        "rate": max(rates),
        "cpu": cpu / count,
        "system": system / count,  # the part of `cpu` spent in the kernel
        "server_cpu": server / count if "Redis" not in name else 0.0,
        "p50": percentile(times, 0.5),
        "p99": percentile(times, 0.99),
        "fan_out": statistics.median(fan),
    }


def redis_benchmark(port: int) -> dict[str, float]:
    """Requests per second of `redis-benchmark -c 1 -n 100000 -t set,lpush -q`."""
    binary = shutil.which("redis-benchmark")
    if binary is None:
        return {}
    argv = [binary, "-p", str(port), "-c", "1", "-n", "100000", "-t", "set,lpush", "-q"]
    output = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    found = re.findall(r"(SET|LPUSH): ([\d.]+) requests per second", output.replace("\r", "\n"))
    return {name: float(rate) for name, rate in found}


Round = dict[str, dict[str, float]]


def run_round(server: RedisServer, number: int, args: argparse.Namespace) -> Round:
    """Every layer once (in an order rotated by the round's number), then redis-benchmark."""
    import uvloop

    names = list(LAYERS)
    names = names[number % len(names) :] + names[: number % len(names)]
    pid = server.proc.pid if server.proc is not None else None
    results: Round = {}
    for name in names:
        results[name] = uvloop.run(
            measure_layer(
                name, server.url, pid, args.seconds, args.samples, args.members, args.repeat
            )
        )
        logger.info("round %d: %s done", number + 1, name)
    results["redis-benchmark -c 1"] = redis_benchmark(server.port)
    return results


async def pass_messages(layer: Any, count: int) -> None:
    """`count` messages from one sender task to one receiver task, each send awaited."""
    channel = await layer.new_channel()

    async def receiver() -> None:
        for n in range(count):
            assert (await layer.receive(channel))["n"] == n

    receiving = asyncio.create_task(receiver())
    for n in range(count):
        await layer.send(channel, {**MESSAGE, "n": n})
    await asyncio.wait_for(receiving, 60)


def counted(url: str, name: str, count: int) -> None:
    """Warm up, then pass `count` messages: run under valgrind with two counts, the difference
    of the instructions over the difference of the counts is the cost of one message."""
    import uvloop

    async def run() -> None:
        layer = LAYERS[name](url)
        await pass_messages(layer, 200)
        await pass_messages(layer, count)
        await layer.flush()

    uvloop.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per 1:1 throughput run")
    parser.add_argument("--samples", type=int, default=2000, help="latency samples")
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=7, help="group sends, median taken")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, layers interleaved")
    parser.add_argument(
        "--messages",
        type=int,
        help="only pass this many messages 1:1 through --layer (for valgrind: see README)",
    )
    parser.add_argument("--layer", choices=list(LAYERS), default="gateway")
    parser.add_argument("--url", help="with --messages: this Redis instead of one of its own")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("gateway.layers").setLevel(logging.WARNING)
    if args.messages is not None:
        if args.url is not None:
            counted(args.url, args.layer, args.messages)
            return
        with running_redis() as server:
            counted(server.url, args.layer, args.messages)
        return
    with running_redis() as server:
        rounds = [run_round(server, number, args) for number in range(args.rounds)]
    for number, results in enumerate(rounds):
        report(f"round {number + 1}", results)
    summarize(rounds)


def ratios(results: Round) -> dict[str, float]:
    """The targets' ratios of one round."""
    ours, core = results["gateway"], results["channels_redis"]
    pubsub = results["channels_redis pubsub"]
    reference = results["redis-benchmark -c 1"].get("SET", 0.0)
    best_fan = min(core["fan_out"], pubsub["fan_out"])
    return {
        "1:1 / core": ours["rate"] / core["rate"],
        "1:1 / pubsub": ours["rate"] / pubsub["rate"],
        "1:1 / redis-benchmark SET": ours["rate"] / reference if reference else float("nan"),
        "p99 / core": ours["p99"] / core["p99"],
        "fan-out / best channels_redis": ours["fan_out"] / best_fan,
        "in-memory fan-out / best channels_redis": (
            results["in-memory (no Redis)"]["fan_out"] / best_fan
        ),
        "CPU per 1:1 message / pubsub's": ours["cpu"] / pubsub["cpu"],
    }


# (ratio, target, whether the ratio must be at least or at most the target)
TARGETS = {
    "1:1 / pubsub": (2.0, ">="),
    "1:1 / redis-benchmark SET": (0.35, ">="),
    "fan-out / best channels_redis": (0.5, "<="),
    "1:1 / core": (10.0, ">="),
    "p99 / core": (0.5, "<="),
}


def report(title: str, results: Round) -> None:
    logger.info("")
    logger.info("%s", title)
    logger.info(
        "%-24s %11s %9s %9s %11s %12s %12s",
        "layer",
        "1:1 msgs/s",
        "p50 ms",
        "p99 ms",
        "fan-out ms",
        "CPU us/msg",
        "Redis us/msg",
    )
    for name, row in results.items():
        if name == "redis-benchmark -c 1":
            continue
        logger.info(
            "%-24s %11s %9.3f %9.3f %11.2f %12.1f %12s",
            name,
            f"{row['rate']:,.0f}",
            row["p50"] * 1000,
            row["p99"] * 1000,
            row["fan_out"] * 1000,
            row["cpu"] * 1e6,
            f"{row['server_cpu'] * 1e6:.1f}" if row["server_cpu"] else "-",
        )
    for command, rate in results["redis-benchmark -c 1"].items():
        logger.info("redis-benchmark -c 1 %-6s %10s req/s", command, f"{rate:,.0f}")
    for name, value in ratios(results).items():
        logger.info("  %-40s %7.3f%s", name, value, verdict(name, value))


def verdict(name: str, value: float) -> str:
    if name not in TARGETS:
        return ""
    target, sense = TARGETS[name]
    met = value >= target if sense == ">=" else value <= target
    return f"  (target {sense} {target:g}: {'met' if met else 'NOT met'})"


def summarize(rounds: list[Round]) -> None:
    logger.info("")
    logger.info("medians of %d rounds (single rounds in brackets)", len(rounds))
    every = [ratios(results) for results in rounds]
    for name in every[0]:
        values = [row[name] for row in every]
        singles = ", ".join(f"{value:.3f}" for value in values)
        median = statistics.median(values)
        logger.info("  %-40s %7.3f [%s]%s", name, median, singles, verdict(name, median))
    for command in rounds[0]["redis-benchmark -c 1"]:
        rates = [results["redis-benchmark -c 1"][command] for results in rounds]
        logger.info(
            "  redis-benchmark -c 1 %s req/s: %s", command, ", ".join(f"{r:,.0f}" for r in rates)
        )
    for name in ("gateway", "channels_redis pubsub"):
        cpu = statistics.median(results[name]["cpu"] for results in rounds)
        system = statistics.median(results[name]["system"] for results in rounds)
        server = statistics.median(results[name]["server_cpu"] for results in rounds)
        logger.info(
            "  %-22s CPU per 1:1 message: this process %.1f us (%.1f us of it in the kernel),"
            " redis-server %.1f us",
            name,
            cpu * 1e6,
            system * 1e6,
            server * 1e6,
        )


if __name__ == "__main__":
    main()
