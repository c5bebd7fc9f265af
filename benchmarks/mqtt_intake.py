"""MQTT intake: messages/s from a publisher, through a broker, into an async consumer that counts.

Run from the project root:  .venv/bin/python benchmarks/mqtt_intake.py [--messages 100000]

One run starts a Mosquitto from the installed binary on a free 127.0.0.1 port and measures, at
QoS 0 and QoS 1, one receiver at a time (each its own process):

- gateway-external: our gateway (`Gateway` with `ExternalBroker`, uvloop) on that Mosquitto,
  an `AsyncMqttConsumer` that counts behind a `MqttTopicRouter`;
- gateway-external-asgi: the same with a plain ASGI callable instead of the consumer, to
  show what the adapter and intake cost without the consumer class;
- gateway-embedded: our gateway with `EmbeddedBroker` (the gateway's own MQTT 3.1.1 broker in
  its loop, PUBACK after the consumer returned); the publisher connects to the gateway itself,
  no Mosquitto involved;
- gateway-embedded-previous, gateway-external-previous (with --previous-tree DIR, a checkout
  of an earlier commit, e.g. `git worktree add /tmp/prev f55bce4~1`): the same receiver run
  from that tree, to compare with an earlier gateway in the same run;
- mqttasgi: mqttasgi 2.0.0 (paho) on the same Mosquitto, a Channels-style `MqttConsumer` that
  subscribes to the same filter and counts;
- bare-gmqtt, bare-aiomqtt, bare-amqtt: a plain client receive loop that only counts (gmqtt
  with a plain `on_message`, aiomqtt's `async for message in client.messages`, amqtt's
  `deliver_message()` loop), all on uvloop: the limit a client library sets.

The publisher is one process writing pre-encoded MQTT 3.1.1 PUBLISH packets on a raw socket
(QoS 1: up to 5,000 unacknowledged), over 100 topics `bench/<n>`. It is checked not to be the
bottleneck: it is measured alone against the broker first, and every receiver's rate is
reported next to it. A receiver's rate is (messages - 1) / (time of the last - time of the
first message it received). Each receiver is measured --rounds times (rounds interleaved, so a
noisy neighbour hits every contender alike); the median is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from inspect import signature
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TOPICS = 100
PAYLOAD = b'{"temperature": 21.5, "humidity": 40}'
FILTER = "bench/#"
IDLE = 5.0  # a receiver that got nothing new for this long reports what it has
QOS1_WINDOW = 5000
CONTENDERS = (
    "gateway-external",
    "gateway-external-asgi",
    "gateway-embedded",
    "gateway-embedded-previous",
    "gateway-external-previous",
    "mqttasgi",
    "bare-gmqtt",
    "bare-aiomqtt",
    "bare-amqtt",
)


# --- the receiver side (one process per contender) ------------------------------------------


class Counter:
    """Counts messages; `done` once `expected` arrived or nothing came for IDLE seconds."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.count = 0
        self.first = 0.0
        self.last = 0.0

    def hit(self) -> None:
        now = time.perf_counter()
        if not self.count:
            self.first = now
        self.count += 1
        self.last = now

    def finished(self) -> bool:
        quiet = self.count and time.perf_counter() - self.last > IDLE
        return self.count >= self.expected or bool(quiet)

    async def wait(self) -> None:
        while not self.finished():
            await asyncio.sleep(0.05)

    def report(self) -> None:
        seconds = max(self.last - self.first, 1e-9)
        print(f"BENCH result {self.count} {seconds:.6f}", flush=True)


def ready(port: int) -> None:
    print(f"BENCH ready {port}", flush=True)


def run_uvloop(main: Callable[[], Any]) -> None:
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())


def receive_gateway(kind: str, port: int, qos: int, counter: Counter) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")
    import django

    django.setup()
    from gateway import AsyncMqttConsumer, MqttTopicRouter, ProtocolTypeRouter
    from gateway.conf import GatewaySettings
    from gateway.server import Gateway
    from routers import topic

    class Count(AsyncMqttConsumer):
        async def receive(self, payload: bytes) -> None:
            counter.hit()

    async def plain(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        counter.hit()

    consumer = plain if kind.endswith("-asgi") else Count.as_asgi()
    app = ProtocolTypeRouter({"mqtt": MqttTopicRouter([topic("bench/{n}", consumer)])})
    if kind.startswith("gateway-external"):
        backend = "protocol_adapters.mqtt.ExternalBroker"
        options: dict[str, Any] = {"URL": f"mqtt://127.0.0.1:{port}", "QOS": qos}
    else:
        backend = "protocol_adapters.mqtt.EmbeddedBroker"
        options = {"PORT": 0, "AUTH": "anonymous", "ACL": None, "QOS": qos}
    adapters = {"mqtt": {"BACKEND": backend, "OPTIONS": options}}
    settings = GatewaySettings({"HTTP": {"ENABLED": False}, "ADAPTERS": adapters})
    gateway = Gateway(app, settings=settings)

    async def main() -> None:
        started = asyncio.Event()
        # As `gateway run` does (a --previous-tree from before settle_heap has no such option).
        settle = (
            {"settle_heap": True} if "settle_heap" in signature(gateway.serve).parameters else {}
        )
        serving = asyncio.create_task(gateway.serve(started, **settle))
        await started.wait()
        address = next(item.address for item in gateway.listeners if item.protocol == "mqtt")
        ready(int(address.split(" ")[0].rsplit(":", 1)[1]))
        await counter.wait()
        counter.report()
        gateway.stop()
        await serving

    run_uvloop(main)


def receive_mqttasgi(port: int, qos: int, counter: Counter) -> None:
    from django.conf import settings

    settings.configure(
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth"],
        CHANNEL_LAYERS={"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}},
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    )
    import django

    django.setup()
    from mqttasgi.consumers import MqttConsumer  # type: ignore[import-untyped]
    from mqttasgi.server import Server  # type: ignore[import-untyped]

    class Count(MqttConsumer):  # type: ignore[misc]
        async def connect(self) -> None:
            await self.subscribe(FILTER, qos)
            asyncio.get_running_loop().create_task(self.report_when_done())

        async def report_when_done(self) -> None:
            await asyncio.sleep(1.0)  # the SUBACK is handled in mqttasgi's paho loop
            ready(port)
            await counter.wait()
            counter.report()
            os._exit(0)

        async def receive(self, mqtt_message: dict[str, Any]) -> None:
            counter.hit()

    Server(Count.as_asgi(), "127.0.0.1", port, client_id="bench-mqttasgi").run()


def receive_gmqtt(port: int, qos: int, counter: Counter) -> None:
    import gmqtt

    async def main() -> None:
        client = gmqtt.Client("bench-gmqtt")
        client.on_message = lambda *args: counter.hit()
        await client.connect("127.0.0.1", port)
        subscribed = asyncio.Event()
        client.on_subscribe = lambda *args: subscribed.set()
        client.subscribe(FILTER, qos=qos)
        await subscribed.wait()
        ready(port)
        await counter.wait()
        counter.report()
        await client.disconnect()

    run_uvloop(main)


def receive_aiomqtt(port: int, qos: int, counter: Counter) -> None:
    import aiomqtt

    async def main() -> None:
        async with aiomqtt.Client("127.0.0.1", port, identifier="bench-aiomqtt") as client:
            await client.subscribe(FILTER, qos=qos)
            ready(port)
            waiter = asyncio.create_task(counter.wait())
            async for _ in client.messages:
                counter.hit()
                if counter.count >= counter.expected:
                    break
            await waiter
            counter.report()

    run_uvloop(main)


def receive_amqtt(port: int, qos: int, counter: Counter) -> None:
    from amqtt.client import MQTTClient

    async def main() -> None:
        client = MQTTClient("bench-amqtt", config={"auto_reconnect": False})
        await client.connect(f"mqtt://127.0.0.1:{port}/")
        await client.subscribe([(FILTER, qos)])
        ready(port)
        while not counter.finished():
            try:
                await client.deliver_message(timeout_duration=1.0)
            except TimeoutError:
                continue
            counter.hit()
        counter.report()
        await client.disconnect()

    run_uvloop(main)


def receive(name: str, port: int, qos: int, expected: int) -> None:
    counter = Counter(expected)
    if name.startswith("gateway-"):
        receive_gateway(name, port, qos, counter)
    elif name == "mqttasgi":
        receive_mqttasgi(port, qos, counter)
    else:
        {"bare-gmqtt": receive_gmqtt, "bare-aiomqtt": receive_aiomqtt, "bare-amqtt": receive_amqtt}[
            name
        ](port, qos, counter)


# --- the publisher -------------------------------------------------------------------------


def _remaining(length: int) -> bytes:
    out = bytearray()
    while True:
        length, byte = divmod(length, 128)
        out.append(byte | (0x80 if length else 0))
        if not length:
            return bytes(out)


def _string(text: bytes) -> bytes:
    return struct.pack("!H", len(text)) + text


def _publish_packet(topic: bytes, qos: int, mid: int) -> bytes:
    body = _string(topic) + (struct.pack("!H", mid) if qos else b"") + PAYLOAD
    return bytes([0x30 | (qos << 1)]) + _remaining(len(body)) + body


async def publish(port: int, qos: int, count: int) -> float:
    """Send `count` messages; return the seconds until the broker has them all."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    connect = _string(b"MQTT") + bytes([4, 0x02]) + struct.pack("!H", 60) + _string(b"bench-pub")
    writer.write(bytes([0x10]) + _remaining(len(connect)) + connect)
    assert (await reader.readexactly(4))[3] == 0, "CONNACK refused"
    topics = [f"bench/{n}".encode() for n in range(TOPICS)]
    acked = 0
    window = asyncio.Event()

    async def read_acks() -> None:
        nonlocal acked
        while acked < count:
            await reader.readexactly(4)  # PUBACK: 0x40 0x02 mid
            acked += 1
            if count - acked == 0 or acked % 500 == 0:
                window.set()

    acks = asyncio.create_task(read_acks()) if qos else None
    started = time.perf_counter()
    for start in range(0, count, 500):
        if qos:
            while start - acked >= QOS1_WINDOW:
                window.clear()
                await window.wait()
        batch = [
            _publish_packet(topics[i % TOPICS], qos, i % 65535 + 1)
            for i in range(start, min(count, start + 500))
        ]
        writer.write(b"".join(batch))
        await writer.drain()
    if acks is not None:
        await acks
    else:
        writer.write(b"\xc0\x00")  # PINGREQ: answered after everything before it was read
        await reader.readexactly(2)
    elapsed = time.perf_counter() - started
    writer.write(b"\xe0\x00")
    writer.close()
    return elapsed


# --- the driver ----------------------------------------------------------------------------


def start_mosquitto(directory: Path) -> tuple[subprocess.Popen[bytes], int]:
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    conf = directory / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\nuser {getpass.getuser()}\n"
        "persistence false\nmax_queued_messages 0\nmax_inflight_messages 100\n"
    )
    proc = subprocess.Popen([binary, "-c", str(conf)], stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("mosquitto did not start")


def spawn_receiver(
    name: str, port: int, qos: int, count: int, tree: Path | None = None
) -> tuple[subprocess.Popen[str], int]:
    command = [sys.executable, __file__, "--role", "receive", "--contender", name]
    command += ["--port", str(port), "--qos", str(qos), "--messages", str(count)]
    env = dict(os.environ)
    if name.endswith("-previous"):
        assert tree is not None, f"{name} needs --previous-tree"
        env["PYTHONPATH"] = str(tree)  # its gateway, routers and adapters come first
    proc = subprocess.Popen(
        command, cwd=tree if name.endswith("-previous") else ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("BENCH ready"):
            return proc, int(line.split()[2])
    raise RuntimeError(f"{name} did not start")


def measure(
    name: str, broker_port: int, qos: int, count: int, tree: Path | None = None
) -> tuple[int, float]:
    proc, port = spawn_receiver(name, broker_port, qos, count, tree)
    try:
        asyncio.run(publish(port, qos, count))
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("BENCH result"):
                _, _, received, seconds = line.split()
                return int(received), float(seconds)
        raise RuntimeError(f"{name} gave no result")
    finally:
        proc.kill()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--slow-messages", type=int, default=2_000, help="for mqttasgi")
    parser.add_argument("--qos", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", nargs="+", choices=CONTENDERS, default=list(CONTENDERS))
    parser.add_argument("--role", choices=["drive", "receive"], default="drive")
    parser.add_argument("--contender", choices=CONTENDERS)
    parser.add_argument("--port", type=int)
    parser.add_argument("--previous-tree", type=Path, help="for the *-previous receivers")
    args = parser.parse_args()
    if args.previous_tree is None and args.role == "drive":
        args.only = [name for name in args.only if not name.endswith("-previous")]
    if args.role == "receive":
        receive(args.contender, args.port, args.qos[0], args.messages)
        return
    with tempfile.TemporaryDirectory(prefix="bench-mosquitto-") as directory:
        broker, port = start_mosquitto(Path(directory))
        try:
            drive(args, port)
        finally:
            broker.terminate()
            broker.wait()


def drive(args: argparse.Namespace, port: int) -> None:
    print(f"{args.messages:,} messages (mqttasgi: {args.slow_messages:,}), {TOPICS} topics, "
          f"median of {args.rounds} rounds")  # fmt: skip
    for qos in args.qos:
        alone = [args.messages / asyncio.run(publish(port, qos, args.messages)) for _ in range(3)]
        print(
            f"\nQoS {qos}: publisher alone into Mosquitto: {statistics.median(alone):,.0f} msgs/s"
        )
        samples: dict[str, list[float]] = {name: [] for name in args.only}
        lost: dict[str, int] = dict.fromkeys(args.only, 0)
        for _ in range(args.rounds):
            for name in args.only:
                count = args.slow_messages if name == "mqttasgi" else args.messages
                received, seconds = measure(name, port, qos, count, args.previous_tree)
                samples[name].append((received - 1) / seconds if received > 1 else 0.0)
                lost[name] = max(lost[name], count - received)
        rates = {name: statistics.median(values) for name, values in samples.items()}
        for name, rate in rates.items():
            spread = f"{min(samples[name]):,.0f}-{max(samples[name]):,.0f}"
            note = f", up to {lost[name]:,} not received" if lost[name] else ""
            print(f"  {name:22} {rate:>10,.0f} msgs/s  (range {spread}{note})")
        ours = rates.get("gateway-external", 0.0)
        for peer in ("gateway-external-previous", "mqttasgi", "bare-aiomqtt", "bare-gmqtt",
                     "bare-amqtt"):  # fmt: skip
            if rates.get(peer):
                print(f"  gateway-external / {peer}: {ours / rates[peer]:.2f}x")
        embedded = rates.get("gateway-embedded", 0.0)
        for peer in ("gateway-embedded-previous", "gateway-external", "bare-gmqtt"):
            if rates.get(peer) and embedded:
                print(f"  gateway-embedded / {peer}: {embedded / rates[peer]:.2f}x")


if __name__ == "__main__":
    main()
