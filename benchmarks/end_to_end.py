"""End to end: device PUBLISH -> consumer -> group_send -> WebSocket client, p50 and p99.

Run from the project root:  .venv/bin/python benchmarks/end_to_end.py [--messages 2000]

One run starts a Mosquitto (installed binary, free 127.0.0.1 port) and, for the Redis
variants, a redis-server (free port, no persistence), and measures one variant at a time:

- mosquitto: the raw broker's round trip, the floor: a bare client publishes to Mosquitto and
  a bare client subscribed to the topic receives it;
- embedded-memory / embedded-redis: `gateway run benchmarks.end_to_end_apps:application`
  (its own process) with the gateway's embedded broker; the device publishes to the gateway;
- external-memory / external-redis: the same with the external-broker adapter on the
  Mosquitto above; the device publishes to Mosquitto.

In the gateway (benchmarks/end_to_end_apps.py) an `AsyncMqttConsumer` sends each reading to a
group with `group_send`; an `AsyncWebsocketConsumer` in that group forwards it to its client.
The in-memory or the Redis channel layer carries the group send (end_to_end_settings.py).

The device and the receiving client (a bare MQTT subscriber, or a bare WebSocket client) live
in this process on uvloop and share one clock: a reading is published, its arrival is timed
where the receiving socket's bytes are parsed, and only then is the next one published (one
reading at a time; --interval adds a pause between readings). The first --warmup readings are
not counted. Each variant runs --rounds times, rounds interleaved (every round starts a fresh
gateway process), and the median of the rounds' p50 and p99 is reported with their range,
next to its ratio to the raw broker's in the same run. With --previous-tree DIR (a checkout
of an earlier commit: `git worktree add /tmp/prev <commit>`) every gateway variant also runs
from that tree as `<variant>-previous`, in the same rounds. The client side's garbage
collector is off while a round runs, for every variant alike. --syscalls instead counts the
gateway's system calls per reading (`strace -c -f` attached after the warm-up, one round).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import os
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar, cast

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.mqtt_intake import _remaining, _string, start_mosquitto  # noqa: E402
from benchmarks.net import free_port, run_loop, start_gateway, wait_port  # noqa: E402

VARIANTS = ("mosquitto", "embedded-memory", "external-memory", "embedded-redis", "external-redis")
TOPIC = b"sensors/device-1/reading"
FILTER = b"sensors/+/reading"
TIMEOUT = 10.0  # one reading that takes longer than this fails the round


def reading(sequence: int) -> bytes:
    return b'{"seq": %d, "device": "device-1", "temperature": 21.5}' % sequence


def sequence_of(payload: bytes) -> int:
    return int(payload[8 : payload.index(b",")])


# --- the clients -----------------------------------------------------------------------------


class Receiving(asyncio.Protocol):
    """The receiving side: times each reading where its bytes are parsed."""

    def __init__(self) -> None:
        self.buffer = b""
        self.expected = -1
        self.arrived: asyncio.Future[float] | None = None
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def expect(self, sequence: int) -> asyncio.Future[float]:
        self.expected = sequence
        self.arrived = asyncio.get_running_loop().create_future()
        return self.arrived

    def got(self, payload: bytes) -> None:
        now = time.perf_counter()
        waiting = self.arrived
        if waiting is not None and not waiting.done() and sequence_of(payload) == self.expected:
            waiting.set_result(now)

    def connection_lost(self, exc: Exception | None) -> None:
        for future in (self.ready, self.arrived):
            if future is not None and not future.done():
                future.set_exception(ConnectionError(f"receiving connection lost: {exc}"))


def connect_packet(client_id: bytes) -> bytes:
    body = _string(b"MQTT") + bytes([4, 0x02]) + struct.pack("!H", 60) + _string(client_id)
    return bytes([0x10]) + _remaining(len(body)) + body


class MqttSubscriber(Receiving):
    """A bare MQTT 3.1.1 client subscribed to FILTER (PUBACKs what arrives at QoS 1)."""

    def __init__(self, qos: int) -> None:
        super().__init__()
        self.qos = qos

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        body = struct.pack("!H", 1) + _string(FILTER) + bytes([self.qos])
        subscribe = bytes([0x82]) + _remaining(len(body)) + body
        self.transport.write(connect_packet(b"e2e-subscriber") + subscribe)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (packet := self._next_packet()) is not None:
            kind, body = packet
            if kind >> 4 == 9 and not self.ready.done():  # SUBACK
                self.ready.set_result(None)
            elif kind >> 4 == 3:  # PUBLISH
                self._publish(kind, body)

    def _publish(self, kind: int, body: bytes) -> None:
        (length,) = struct.unpack_from("!H", body)
        offset = 2 + length
        if kind & 0x06:
            self.transport.write(b"\x40\x02" + body[offset : offset + 2])
            offset += 2
        self.got(body[offset:])

    def _next_packet(self) -> tuple[int, bytes] | None:
        buffer = self.buffer
        length, multiplier, index = 0, 1, 1
        while True:
            if index >= len(buffer):
                return None
            byte = buffer[index]
            length += (byte & 0x7F) * multiplier
            multiplier *= 128
            index += 1
            if not byte & 0x80:
                break
        if len(buffer) < index + length:
            return None
        self.buffer = buffer[index + length :]
        return buffer[0], buffer[index : index + length]


class WebSocketClient(Receiving):
    """A bare WebSocket client of /ws/readings/: every text frame is a reading."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        key = base64.b64encode(os.urandom(16)).decode()
        self.transport.write(
            (
                "GET /ws/readings/ HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\nOrigin: http://127.0.0.1\r\n\r\n"
            ).encode()
        )

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.ready.done():
            head, sep, rest = self.buffer.partition(b"\r\n\r\n")
            if not sep:
                return
            if b" 101 " not in head.split(b"\r\n", 1)[0]:
                self.ready.set_exception(RuntimeError(f"handshake refused: {head[:80]!r}"))
                return
            self.buffer = rest
            self.ready.set_result(None)  # the consumer joined its group before accepting
        while len(self.buffer) >= 2:
            length, offset = self.buffer[1] & 0x7F, 2
            if length == 126:
                if len(self.buffer) < 4:
                    return
                length, offset = struct.unpack_from("!H", self.buffer, 2)[0], 4
            if len(self.buffer) < offset + length:
                return
            frame, self.buffer = (
                self.buffer[offset : offset + length],
                self.buffer[offset + length :],
            )
            self.got(frame)


class Publisher(asyncio.Protocol):
    """The device: a bare MQTT 3.1.1 client publishing one reading at a time."""

    def __init__(self, qos: int) -> None:
        self.qos = qos
        self.mid = 0
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(connect_packet(b"e2e-device"))

    def data_received(self, data: bytes) -> None:  # CONNACK, then PUBACKs: nothing to do
        if not self.ready.done():
            self.ready.set_result(None)

    def publish(self, payload: bytes) -> None:
        body = _string(TOPIC)
        if self.qos:
            self.mid = self.mid % 65535 + 1
            body += struct.pack("!H", self.mid)
        body += payload
        self.transport.write(bytes([0x30 | self.qos << 1]) + _remaining(len(body)) + body)


# --- one round -------------------------------------------------------------------------------


@dataclass
class Ports:
    mosquitto: int
    redis_url: str | None


P = TypeVar("P", bound=asyncio.Protocol)


async def open_client(protocol: P, port: int) -> P:
    await asyncio.get_running_loop().create_connection(lambda: protocol, "127.0.0.1", port)
    return protocol


async def wait_until_delivered(publisher: Publisher, receiver: Receiving) -> None:
    """Publish probes until one arrives: the gateway's subscription is in place."""
    for _ in range(int(TIMEOUT / 0.2)):
        arrived = receiver.expect(-1)
        publisher.publish(reading(-1))
        try:
            await asyncio.wait_for(asyncio.shield(arrived), 0.2)
            return
        except TimeoutError:
            continue
    raise RuntimeError("no reading reached the receiver")


async def timed(publisher: Publisher, receiver: Receiving, args: argparse.Namespace) -> list[float]:
    await wait_until_delivered(publisher, receiver)
    latencies = []
    gc.collect()
    gc.disable()
    try:
        for sequence in range(args.warmup + args.messages):
            arrived = receiver.expect(sequence)
            sent = time.perf_counter()
            publisher.publish(reading(sequence))
            latency = await asyncio.wait_for(arrived, TIMEOUT) - sent
            if sequence >= args.warmup:
                latencies.append(latency)
            if args.interval:
                await asyncio.sleep(args.interval)
    finally:
        gc.enable()
    return latencies


async def measure_mosquitto(ports: Ports, args: argparse.Namespace) -> list[float]:
    receiver = await open_client(MqttSubscriber(args.qos), ports.mosquitto)
    await asyncio.wait_for(receiver.ready, TIMEOUT)
    publisher = await open_client(Publisher(args.qos), ports.mosquitto)
    await asyncio.wait_for(publisher.ready, TIMEOUT)
    try:
        return await timed(publisher, receiver, args)
    finally:
        publisher.transport.close()
        receiver.transport.close()


@contextmanager
def gateway_process(
    variant: str, ports: Ports, qos: int, tree: Path | None
) -> Iterator[tuple[int, int, int]]:
    """`gateway run` for `variant`; yields its HTTP port, the port devices publish to, its pid."""
    broker, layer = variant.split("-")[:2]
    tree = tree if variant.endswith("-previous") else ROOT
    mqtt_port = ports.mosquitto if broker == "external" else free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(tree),
        "DJANGO_SETTINGS_MODULE": "benchmarks.end_to_end_settings",
        "E2E_BROKER": broker,
        "E2E_LAYER": layer,
        "E2E_MQTT_PORT": str(mqtt_port),
        "E2E_QOS": str(qos),
        "E2E_REDIS_URL": ports.redis_url or "",
    }
    assert tree is not None, f"{variant} needs --previous-tree"
    proc, http_port = start_gateway("benchmarks.end_to_end_apps:application", env, tree)
    try:
        wait_port(mqtt_port)
        yield http_port, mqtt_port, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def measure_gateway(variant: str, ports: Ports, args: argparse.Namespace) -> list[float]:
    with gateway_process(variant, ports, args.qos, args.previous_tree) as (http, mqtt, pid):
        publisher, receiver = await connect_clients(http, mqtt, args.qos)
        try:
            if args.syscalls:
                return await count_syscalls(variant, pid, publisher, receiver, args)
            return await timed(publisher, receiver, args)
        finally:
            publisher.transport.close()
            receiver.transport.close()


async def connect_clients(http: int, mqtt: int, qos: int) -> tuple[Publisher, Receiving]:
    receiver = await open_client(WebSocketClient(), http)
    await asyncio.wait_for(receiver.ready, TIMEOUT)
    publisher = await open_client(Publisher(qos), mqtt)
    await asyncio.wait_for(publisher.ready, TIMEOUT)
    return publisher, receiver


async def count_syscalls(
    variant: str, pid: int, publisher: Publisher, receiver: Receiving, args: argparse.Namespace
) -> list[float]:
    """The gateway's system calls per reading (strace -c, attached after the warm-up)."""
    warmup = argparse.Namespace(**{**vars(args), "messages": 0})
    await timed(publisher, receiver, warmup)
    with tempfile.NamedTemporaryFile("r", suffix=".strace") as out:
        strace = await asyncio.create_subprocess_exec(
            "strace", "-c", "-f", "-p", str(pid), "-o", out.name, stderr=subprocess.DEVNULL
        )
        await asyncio.sleep(1.0)  # attached to every thread by then
        timed_run = argparse.Namespace(**{**vars(args), "warmup": 0})
        latencies = await timed(publisher, receiver, timed_run)
        strace.send_signal(signal.SIGINT)
        await strace.wait()
        counts = {
            fields[-1]: int(fields[3])
            for line in out.read().splitlines()
            if len(fields := line.split()) >= 5 and fields[3].isdigit()
        }
    per = ", ".join(
        f"{name} {n / args.messages:.1f}" for name, n in counts.items() if name != "total"
    )
    print(f"  {variant:27} {counts.get('total', 0) / args.messages:.1f} per reading: {per}")
    return latencies


def percentile(sorted_values: list[float], fraction: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * fraction))]


# --- the driver ------------------------------------------------------------------------------


def redis_server(needed: bool) -> AbstractContextManager[object]:
    if not needed:
        return nullcontext(None)
    from tests.integration.redis import running_redis

    return running_redis()


async def drive(args: argparse.Namespace, ports: Ports) -> None:
    variants = list(args.only)
    if args.previous_tree is not None:
        variants = [
            v for name in args.only for v in (name, f"{name}-previous") if v != "mosquitto-previous"
        ]
    if args.syscalls:  # one round, and its latencies (under strace) are not reported
        args.rounds, variants = 1, [name for name in variants if name != "mosquitto"]
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    for round_number in range(1, args.rounds + 1):
        for variant in variants:
            if variant == "mosquitto":
                latencies = await measure_mosquitto(ports, args)
            else:
                latencies = await measure_gateway(variant, ports, args)
            latencies.sort()
            p50, p99 = percentile(latencies, 0.5) * 1e3, percentile(latencies, 0.99) * 1e3
            results[variant].append((p50, p99))
            if not args.syscalls:
                print(f"  round {round_number} {variant:27} p50 {p50:.3f} ms  p99 {p99:.3f} ms")
    if not args.syscalls:
        report(results)


def report(results: dict[str, list[tuple[float, float]]]) -> None:
    print(f"\n{'variant':27} {'p50 ms (range)':24} {'p99 ms (range)':24} p50, p99 / raw")
    medians = {
        variant: (statistics.median(r[0] for r in rounds), statistics.median(r[1] for r in rounds))
        for variant, rounds in results.items()
    }
    raw = medians.get("mosquitto")
    for variant, rounds in results.items():
        p50s, p99s = [r[0] for r in rounds], [r[1] for r in rounds]
        p50, p99 = medians[variant]
        ratio = f"{p50 / raw[0]:.2f}x, {p99 / raw[1]:.2f}x" if raw else "-"
        print(
            f"{variant:27} {p50:.3f} ({min(p50s):.3f}-{max(p50s):.3f}){'':5}"
            f" {p99:.3f} ({min(p99s):.3f}-{max(p99s):.3f}){'':5} {ratio}"
        )
    for variant, (p50, p99) in medians.items():
        previous = medians.get(f"{variant}-previous")
        if previous:
            print(
                f"{variant} / previous: p50 {p50 / previous[0]:.2f}x, p99 {p99 / previous[1]:.2f}x"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000, help="timed readings per round")
    parser.add_argument("--warmup", type=int, default=200, help="readings not counted")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--qos", type=int, choices=[0, 1], default=0)
    parser.add_argument("--interval", type=float, default=0.0, help="pause between readings, s")
    parser.add_argument("--only", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument(
        "--syscalls",
        action="store_true",
        help="count the gateway's system calls per reading with strace (one round)",
    )
    parser.add_argument(
        "--previous-tree",
        type=Path,
        help="a checkout of an earlier commit: each gateway variant also runs from it",
    )
    args = parser.parse_args()
    print(
        f"{args.messages:,} readings one at a time (after {args.warmup} not counted), "
        f"QoS {args.qos}, median of {args.rounds} interleaved rounds"
    )
    needs_redis = any(name.endswith("-redis") for name in args.only)
    with ExitStack() as stack:
        directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="e2e-"))
        broker, mosquitto_port = start_mosquitto(Path(directory))
        stack.callback(broker.wait)
        stack.callback(broker.terminate)
        redis = stack.enter_context(redis_server(needs_redis))
        ports = Ports(mosquitto_port, getattr(redis, "url", None))
        run_loop(drive(args, ports))


if __name__ == "__main__":
    main()
