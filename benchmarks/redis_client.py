"""Our Redis client (gateway/layers/redis/wire.py) against redis-py's asyncio client with
hiredis, on the commands the Redis channel layer sends.

Run from the repository root: ``.venv/bin/python benchmarks/redis_client.py``. It starts its own
redis-server (no persistence) on a free port and runs, on uvloop, every workload through both
clients, interleaved over rounds (the order of the two alternating), then reports the median
ops/s of each, the ratio ours / redis-py, and the CPU time of this process per op:

- send N: N concurrent callers each loop on the layer's SEND script (EVALSHA with the keys and
  arguments `RedisChannelLayer.send` builds for a specific channel). Ours: `Script.command` and
  `WireConnection.request` on one shared connection, the layer's `run_script`; redis-py: the
  script from `register_script`, called through the client's connection pool.
- group_send: the GROUP_SEND script to a group of 100 members in 4 inboxes, one caller.
- group_add N: the layer's membership writes (ZADD, EXPIRE, ZADD GT, EXPIRE) as one pipeline
  per call. Ours: `execute_many`; redis-py: `pipeline(transaction=False)`.
- receive 1:1: a producer runs SEND for one message (through our client for both: only the
  receiving side changes) and waits until the receiver has it. The receiver pops the inbox
  with BLMPOP behind a wake-up list (COUNT 1024), as the layer's receive task does. Ours: 8
  pops queued on a connection of its own, replies taken in `data_received`, topped up when 2
  are left (the layer's `_Pops`); redis-py: one task looping on `blmpop`, one pop at a time.
- receive stream: redis-benchmark (another process: 4 connections, 16 commands pipelined on
  each) runs SEND into the inbox as fast as it can; entries/s the receiver counts.

Both clients get the same precomputed keys and arguments: the work measured is the client's.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import re
import secrets
import shutil
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from django.conf import settings

if not settings.configured:
    settings.configure(CHANNEL_LAYERS={})

import msgpack
from redis.asyncio import Redis

from gateway.layers.redis import RedisChannelLayer
from gateway.layers.redis.config import parse_hosts
from gateway.layers.redis.connections import Script
from gateway.layers.redis.receiver import BATCH, DEPTH, REFILL_AT, encode_entry
from gateway.layers.redis.scripts import GROUP_SEND, SEND
from gateway.layers.redis.sending import make_plan
from gateway.layers.redis.wire import ReplyHandler, WireConnection, open_connection, pack
from tests.integration.redis import running_redis

logger = logging.getLogger("gateway.benchmarks")

MESSAGE = {"type": "bench.message", "text": "hello world", "n": 1}
INBOXES = 4
MEMBERS = 100
BLOCK = 5.0
OURS, THEIRS = "ours", "redis-py"
SCRIPTS = (SEND, GROUP_SEND)
# GROUP_SEND's count of capacity patterns and of durable patterns: the default CONFIG has none.
NO_PATTERNS = (0, 0)

OnEntries = Callable[[list[bytes]], None]
Stopper = Callable[[], Awaitable[None]]


class Workload:
    """Names, keys and script arguments as the layer builds them (its own methods)."""

    def __init__(self) -> None:
        # A large inbox capacity: every SEND pushes (lists are emptied after each run).
        self.layer = RedisChannelLayer(
            hosts=["redis://unused"], prefix="bench", inbox_capacity=10**7
        )
        prefix = self.layer.client_prefix
        self.inboxes = [f"specific.{prefix}.{secrets.token_hex(3)}!" for _ in range(INBOXES)]
        self.lists = [self.layer.list_key(inbox) for inbox in self.inboxes]
        self.payload: bytes = msgpack.packb(MESSAGE)
        self.wake_keys = [f"bench:w:{prefix}.{n}" for n in range(DEPTH)]
        # The layer's order: a wake-up list first (each queued pop watches one of them).
        self.pop_keys = [self.wake_keys[0], self.lists[0]]
        self.wake_set = {key.encode() for key in self.wake_keys}

    def send_call(self, caller: int) -> tuple[list[str], list[Any]]:
        """The SEND script's keys and arguments for a specific channel, as `send` builds them."""
        layer = self.layer
        channel = self.inboxes[caller % INBOXES] + secrets.token_hex(8)
        now_ms = int(time.time() * 1000)
        entry = encode_entry(now_ms + int(layer.expiry * 1000), channel, self.payload)
        plan = make_plan(layer, Script(SEND), channel)
        return plan.keys, plan.args(now_ms, entry)

    def group_members(self) -> list[tuple[Any, ...]]:
        """The writes of `group_add` for MEMBERS channels spread over the inboxes."""
        now_ms = int(time.time() * 1000)
        commands: list[tuple[Any, ...]] = []
        for n in range(MEMBERS):
            channel = self.inboxes[n % INBOXES] + secrets.token_hex(8)
            commands += self.layer.membership_commands("group", channel, 0, now_ms)
        return commands

    def group_send_call(self) -> tuple[list[str], list[Any]]:
        """GROUP_SEND's keys and arguments, as the layer's `group_send` builds them."""
        layer = self.layer
        now_ms = int(time.time() * 1000)
        args = [
            now_ms - int(layer.group_expiry * 1000),
            b"%014d" % (now_ms + int(layer.expiry * 1000)),
            self.payload,
            layer.capacity,
            layer.expiry_seconds,
            "bench:c:",
            "bench:d:",
            *NO_PATTERNS,
            layer.inbox_capacity,
            now_ms,
        ]
        # The shard's marker (see liveness): present, as on a Redis that kept its data.
        return [layer.group_key("group", 0), "bench:ready"], args

    def group_add_call(self, caller: int) -> list[tuple[Any, ...]]:
        channel = self.inboxes[caller % INBOXES] + f"adder{caller}"
        return self.layer.membership_commands("adders", channel, 0, int(time.time() * 1000))


# --- the two clients ---------------------------------------------------------------------------


class Ours:
    """The layer's hot path on our wire client: one shared connection."""

    name = OURS

    def __init__(self, url: str) -> None:
        self.spec = parse_hosts([url])[0]
        self.scripts = {source: Script(source) for source in SCRIPTS}
        self.wire: WireConnection

    async def open(self) -> None:
        self.wire = await open_connection(self.spec, 10.0)
        for script in self.scripts.values():
            await self.wire.execute("SCRIPT", "LOAD", script.source)

    def script(self, source: str, keys: list[str], args: list[Any]) -> Awaitable[Any]:
        return self.wire.request(self.scripts[source].command(keys, args))

    async def pipeline(self, commands: list[tuple[Any, ...]]) -> None:
        for reply in self.wire.execute_many(*commands):
            await reply

    async def receiver(self, work: Workload, on_entries: OnEntries) -> Stopper:
        """Start popping as the layer's receive task does; returns what stops it."""
        wire = await open_connection(self.spec, BLOCK + 10)
        pops = _Pops(work.wake_set, on_entries)
        keys = work.pop_keys
        pop = pack(("BLMPOP", BLOCK, len(keys), *keys, "LEFT", "COUNT", BATCH))
        loop = asyncio.get_running_loop()

        async def run() -> None:
            while True:
                if pops.queued <= REFILL_AT:
                    count = DEPTH - pops.queued
                    wire.write_to(pop * count, count, pops)
                    pops.queued += count
                pops.signal = loop.create_future()
                await pops.signal

        task = asyncio.create_task(run())

        async def stop() -> None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            wire.close()

        return stop

    async def close(self) -> None:
        self.wire.close()


class _Pops(ReplyHandler):
    """The replies of the queued pops, handed over in `data_received` (the layer's `_Pops`)."""

    def __init__(self, wake: set[bytes], on_entries: OnEntries) -> None:
        self.wake = wake
        self.on_entries = on_entries
        self.queued = 0
        self.signal: asyncio.Future[None] | None = None

    def reply(self, value: Any) -> None:
        self.queued -= 1
        if value is not None and value[0] not in self.wake:
            self.on_entries(value[1])
        if self.queued <= REFILL_AT and self.signal is not None and not self.signal.done():
            self.signal.set_result(None)

    def fail(self, error: Exception) -> None:
        if self.signal is not None and not self.signal.done():
            self.signal.set_exception(error)


class Theirs:
    """The same through redis-py's asyncio client (hiredis parser, connection pool)."""

    name = THEIRS

    def __init__(self, url: str) -> None:
        self.url = url
        self.client = Redis.from_url(url)
        self.scripts = {source: self.client.register_script(source) for source in SCRIPTS}

    async def open(self) -> None:
        for script in self.scripts.values():
            await self.client.script_load(script.script)

    def script(self, source: str, keys: list[str], args: list[Any]) -> Awaitable[Any]:
        return self.scripts[source](keys=keys, args=args)

    async def pipeline(self, commands: list[tuple[Any, ...]]) -> None:
        async with self.client.pipeline(transaction=False) as pipe:
            for command in commands:
                pipe.execute_command(*command)
            await pipe.execute()

    async def receiver(self, work: Workload, on_entries: OnEntries) -> Stopper:
        """The same loop as a redis-py user writes it: one pop at a time."""
        client = Redis.from_url(self.url, socket_timeout=BLOCK + 10)
        wake, keys = work.wake_set, work.pop_keys
        running = True

        async def run() -> None:
            while running:
                reply = await client.blmpop(BLOCK, len(keys), *keys, direction="LEFT", count=BATCH)
                if reply is not None and reply[0] not in wake:
                    on_entries(reply[1])

        task = asyncio.create_task(run())

        async def stop() -> None:
            # Woken, not cancelled: cancelling this task inside redis-py 8.1's blmpop left it
            # hanging in a trial run (not looked into further).
            nonlocal running
            running = False
            await self.client.rpush(work.wake_keys[0], b"")
            await task
            await self.client.delete(work.wake_keys[0])
            await client.aclose()

        return stop

    async def close(self) -> None:
        await self.client.aclose()


Client = Ours | Theirs


# --- the workloads -----------------------------------------------------------------------------


@dataclass
class Result:
    """One run: ops/s, and CPU seconds of this process per op."""

    rate: float
    cpu: float
    producer: float | None = None  # what redis-benchmark reported, in the stream runs


async def callers(count: int, seconds: float, call: Callable[[int], Awaitable[Any]]) -> Result:
    """`count` tasks each awaiting `call(own number)` in a loop for `seconds`."""
    stop = time.perf_counter() + seconds
    done = 0

    async def caller(number: int) -> None:
        nonlocal done
        calls = 0
        while time.perf_counter() < stop:
            await call(number)
            calls += 1
        done += calls

    gc.collect()
    cpu, started = time.process_time(), time.perf_counter()
    await asyncio.gather(*(caller(n) for n in range(count)))
    cpu = time.process_time() - cpu
    return Result(done / (time.perf_counter() - started), cpu / done)


async def send(client: Client, work: Workload, count: int, seconds: float) -> Result:
    calls = [work.send_call(n) for n in range(count)]

    async def call(number: int) -> None:
        keys, args = calls[number]
        if await client.script(SEND, keys, args) != 1:
            raise RuntimeError("SEND did not push: the workload is not the one meant")

    return await callers(count, seconds, call)


async def group_send(client: Client, work: Workload, seconds: float) -> Result:
    keys, args = work.group_send_call()

    async def call(_: int) -> None:
        if await client.script(GROUP_SEND, keys, args) != MEMBERS:
            raise RuntimeError("GROUP_SEND did not reach every member")

    return await callers(1, seconds, call)


async def group_add(client: Client, work: Workload, count: int, seconds: float) -> Result:
    calls = [work.group_add_call(n) for n in range(count)]
    return await callers(count, seconds, lambda number: client.pipeline(calls[number]))


async def receive_one(client: Client, producer: Ours, work: Workload, seconds: float) -> Result:
    """One message at a time: sent, then waited for until the receiver has it."""
    loop = asyncio.get_running_loop()
    arrived: list[asyncio.Future[None]] = []

    def on_entries(entries: list[bytes]) -> None:
        for _ in entries:
            arrived.pop(0).set_result(None)

    stop = await client.receiver(work, on_entries)
    await asyncio.sleep(0.05)  # the pops are waiting in Redis
    keys, args = work.send_call(0)

    async def call(_: int) -> None:
        waiter = loop.create_future()
        arrived.append(waiter)
        await producer.script(SEND, keys, args)
        await waiter

    try:
        return await callers(1, seconds, call)
    finally:
        await stop()


async def receive_stream(client: Client, work: Workload, port: int, messages: int) -> Result:
    """Entries/s at the receiver while redis-benchmark pushes `messages` through SEND,
    from the first reply with entries to the last entry."""
    binary = shutil.which("redis-benchmark")
    assert binary is not None, "redis-benchmark is not installed (Debian: redis-tools)"
    finished = asyncio.get_running_loop().create_future()
    counts: list[tuple[float, int]] = []  # (when, entries so far): the first reply, the last

    def on_entries(entries: list[bytes]) -> None:
        total = (counts[-1][1] if counts else 0) + len(entries)
        if len(counts) < 2:
            counts.append((time.perf_counter(), total))
        else:
            counts[-1] = (time.perf_counter(), total)
        if total >= messages and not finished.done():
            finished.set_result(None)

    stop = await client.receiver(work, on_entries)
    await asyncio.sleep(0.05)  # the pops are waiting in Redis
    keys, args = work.send_call(0)
    argv = [binary, "-p", str(port), "-c", "4", "-P", "16", "-n", str(messages), "-q"]
    command = [b"EVALSHA", Script(SEND).sha.encode(), b"2", *map(_arg, [*keys, *args])]
    gc.collect()
    cpu = time.process_time()
    bench = await asyncio.create_subprocess_exec(
        *argv, *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        await asyncio.wait_for(finished, 120)
        cpu = time.process_time() - cpu
        output, _ = await bench.communicate()
    finally:
        await stop()
    (first_time, first_count), (last_time, last_count) = counts
    found = re.findall(rb"([\d.]+) requests per second", output.replace(b"\r", b"\n"))
    return Result(
        (last_count - first_count) / (last_time - first_time),
        cpu / last_count,
        float(found[-1]) if found else None,
    )


def _arg(value: Any) -> bytes:
    data = value if isinstance(value, bytes) else str(value).encode()
    assert b"\0" not in data, "redis-benchmark takes its arguments from argv: no NUL bytes"
    return data


# --- running and reporting ---------------------------------------------------------------------


async def measure(url: str, port: int, rounds: int, seconds: float, messages: int) -> Any:
    work = Workload()
    ours, theirs = Ours(url), Theirs(url)
    for client in (ours, theirs):
        await client.open()
    for command in [*work.group_members(), ("SET", "bench:ready", "bench")]:
        await ours.wire.execute(*command)

    cases: dict[str, Callable[[Client], Awaitable[Result]]] = {
        "send 1": lambda client: send(client, work, 1, seconds),
        "send 8": lambda client: send(client, work, 8, seconds),
        "send 64": lambda client: send(client, work, 64, seconds),
        "group_send 1": lambda client: group_send(client, work, seconds),
        "group_add 1": lambda client: group_add(client, work, 1, seconds),
        "group_add 8": lambda client: group_add(client, work, 8, seconds),
        "receive 1:1": lambda client: receive_one(client, ours, work, seconds),
        "receive stream": lambda client: receive_stream(client, work, port, messages),
    }
    results: dict[str, dict[str, list[Result]]] = {case: {OURS: [], THEIRS: []} for case in cases}
    for number in range(rounds + 1):  # round 0 warms up: connections, pools, scripts
        order = [ours, theirs] if number % 2 else [theirs, ours]
        for case, run in cases.items():
            for client in order:
                result = await run(client)
                await ours.wire.execute("DEL", *work.lists)
                if number:
                    results[case][client.name].append(result)
        logger.info("round %d/%d done", number, rounds)
    for client in (ours, theirs):
        await client.close()
    return results


def report(results: dict[str, dict[str, list[Result]]], rounds: int) -> None:
    logger.info("")
    logger.info("median of %d interleaved rounds (range of the per-round ratios)", rounds)
    header = f"{'workload':<16} {'ours ops/s':>12} {'redis-py ops/s':>15} {'ours/redis-py':>22}"
    logger.info("%s %12s %12s", header, "ours CPU/op", "r-py CPU/op")
    for case, by_client in results.items():
        ours, theirs = by_client[OURS], by_client[THEIRS]
        ours_rate = statistics.median(r.rate for r in ours)
        their_rate = statistics.median(r.rate for r in theirs)
        ratios = [a.rate / b.rate for a, b in zip(ours, theirs, strict=True)]
        spread = f"({min(ratios):.2f}-{max(ratios):.2f})"
        logger.info(
            "%-16s %12s %15s %7.2fx %-14s %9.1f µs %9.1f µs",
            case,
            f"{ours_rate:,.0f}",
            f"{their_rate:,.0f}",
            ours_rate / their_rate,
            spread,
            statistics.median(r.cpu for r in ours) * 1e6,
            statistics.median(r.cpu for r in theirs) * 1e6,
        )
    for name in (OURS, THEIRS):
        rates = [r.producer for r in results["receive stream"][name] if r.producer is not None]
        if rates:
            logger.info(
                "receive stream: redis-benchmark's own rate beside %s: %s req/s (median)",
                name,
                f"{statistics.median(rates):,.0f}",
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0, help="per run of a workload")
    parser.add_argument("--messages", type=int, default=100_000, help="per receive stream run")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import uvloop

    with running_redis() as server:
        results = uvloop.run(
            measure(server.url, server.port, args.rounds, args.seconds, args.messages)
        )
    report(results, args.rounds)


if __name__ == "__main__":
    main()
