"""Commands that wait for the device: round trips/s and p50/p99 from one process to 100 devices.

Run from the project root:  .venv/bin/python benchmarks/mqtt_commands.py [--seconds 8]

One run starts a Mosquitto from the installed binary on a free 127.0.0.1 port, and one process
of 100 simulated devices (gmqtt, MQTT 5, uvloop) that answer every command on its response
topic with its correlation data. Then, one contender at a time (each its own process, rounds
interleaved, median of --rounds), under each --load, spread over the 100 devices: ``c1``
(one caller: the round trip itself), ``r2000`` (2,000 commands a second on schedule: the round
trip under load) and ``c100`` (100 callers: how many round trips a second one process gets):

- gateway: `gateway.mqtt.arequest()` in a process running a `Gateway` with `ExternalBroker`
  and ``COMMANDS`` on that Mosquitto (uvloop, in-memory channel layer), every command
  recorded in the `DeviceCommand` history (SQLite in WAL mode, written by the store's thread);
- gateway-memory-store: the same with a command store that keeps nothing, to show what the
  history's writes cost;
- bare-gmqtt: one plain gmqtt client (MQTT 5, uvloop) publishing each command with a response
  topic and correlation data and waiting for the answer on a future: the broker's own
  request/response round trip.

A round trip is from the call (the publish, for bare-gmqtt) to the answer in the caller's hands.
Each process warms up for 2 s, then collects and freezes its garbage before it measures; one
uncounted bare-gmqtt run precedes each load. Commands that raised are counted ("failed") with
their first distinct errors.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import getpass
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.mqtt_intake import run_uvloop  # noqa: E402
from benchmarks.net import free_port, wait_port  # noqa: E402

DEVICES = 100
PAYLOAD = b'{"set": {"valve": "open"}}'
CONTENDERS = ("gateway", "gateway-memory-store", "bare-gmqtt")


def start_mosquitto(directory: Path) -> tuple[subprocess.Popen[bytes], int]:
    """Mosquitto for round trips: TCP_NODELAY (else each answer waits for a delayed ACK,
    ~40 ms) and a Receive Maximum above the commands in flight (gmqtt raises past it)."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = free_port()
    conf = directory / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\nuser {getpass.getuser()}\n"
        "persistence false\nset_tcp_nodelay true\nmax_inflight_messages 1000\n"
        "max_queued_messages 100000\n"
    )
    proc = subprocess.Popen([binary, "-c", str(conf)], stderr=subprocess.DEVNULL)
    wait_port(port)
    return proc, port


# --- the devices ------------------------------------------------------------------------------


def run_devices(port: int, count: int) -> None:
    """`count` gmqtt clients answering every command; prints ready, runs until killed."""
    from gmqtt import Client

    async def main() -> None:
        clients = []
        for n in range(count):
            client = Client(f"sim-{n}")

            def answer(client: Any, topic: str, payload: bytes, qos: int, props: Any) -> int:
                reply_to = props.get("response_topic")
                if reply_to:
                    correlation = props.get("correlation_data", [b""])[0]
                    client.publish(reply_to[0], payload, qos=1, correlation_data=correlation)
                return 0

            client.on_message = answer
            await client.connect("127.0.0.1", port, version=5)
            client.subscribe(f"devices/sim-{n}/commands/#", qos=1)
            clients.append(client)
        await asyncio.sleep(0.5)  # the SUBACKs
        print("BENCH ready", flush=True)
        await asyncio.Event().wait()

    run_uvloop(main)


# --- the callers --------------------------------------------------------------------------------


async def drive(call: Any, load: str, seconds: float) -> dict[str, float]:
    """Run `call(device_index)` for `seconds` under `load`; round trips/s, p50 and p99 in ms.

    ``"c<N>"``: N callers each waiting for its answer before the next (closed loop: how many
    round trips one process gets through). ``"r<N>"``: N commands a second, each sent on its
    schedule whatever the others do (open loop), its round trip counted from the time it was
    due, so a stall shows in the figures instead of slowing the senders down.
    """
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    amount = int(load[1:])

    failures: list[str] = []

    async def timed(n: int, due: float) -> None:
        try:
            await call(n % DEVICES)
        except Exception as exc:  # counted and reported: a lost answer must show
            failures.append(repr(exc))
            return
        latencies.append(time.perf_counter() - due)

    async def worker(offset: int) -> None:
        n = offset
        while time.perf_counter() < deadline:
            await timed(n, time.perf_counter())
            n += amount

    async def schedule() -> None:
        tasks, due, n = [], time.perf_counter(), 0
        while due < deadline:
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            tasks.append(asyncio.ensure_future(timed(n, due)))
            n, due = n + 1, due + 1 / amount
        await asyncio.gather(*tasks)

    if load.startswith("c"):
        await asyncio.gather(*(worker(w) for w in range(amount)))
    else:
        await schedule()
    ordered = sorted(latencies)
    return {
        "rate": len(ordered) / seconds,
        "p50": ordered[len(ordered) // 2] * 1000,
        "p99": ordered[int(len(ordered) * 0.99)] * 1000,
        "failed": len(failures),
        "errors": sorted({f[:120] for f in failures})[:3],  # type: ignore[dict-item]
    }


class MemoryStore:
    """A `CommandStore` that keeps nothing: the gateway's path without the history's writes."""

    async def record(self, changes: Any) -> list[str]:
        return []


def call_gateway(kind: str, port: int, load: str, seconds: float, db: str) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.commands_settings")
    os.environ["BENCH_DB"] = db
    import django

    django.setup()
    from django.core.management import call_command

    from django_app.models.devices import Device
    from gateway import MqttTopicRouter, ProtocolTypeRouter
    from gateway.conf import GatewaySettings
    from gateway.mqtt import arequest
    from gateway.server import Gateway

    if "COMMANDS_SWITCH_INTERVAL" in os.environ:  # GATEWAY["SWITCH_INTERVAL"], as `gateway run`
        sys.setswitchinterval(float(os.environ["COMMANDS_SWITCH_INTERVAL"]))
    call_command("migrate", verbosity=0)
    for n in range(DEVICES):
        Device.objects.get_or_create(device_id=f"sim-{n}")
    commands: dict[str, Any] = {}
    if kind == "gateway-memory-store":
        commands["STORE"] = "benchmarks.mqtt_commands.MemoryStore"
    # No session left behind: a dead process's persistent session would keep its subscription
    # to every answer, and the broker would queue each one for it in the later runs.
    options = {
        "URL": f"mqtt://127.0.0.1:{port}",
        "COMMANDS": commands or True,
        "CLEAN_START": True,
        "SESSION_EXPIRY": 0,
    }
    adapters = {"mqtt": {"BACKEND": "protocol_adapters.mqtt.ExternalBroker", "OPTIONS": options}}
    settings = GatewaySettings({"HTTP": {"ENABLED": False}, "ADAPTERS": adapters})
    gateway = Gateway(ProtocolTypeRouter({"mqtt": MqttTopicRouter([])}), settings=settings)

    async def one(n: int) -> None:
        await arequest(f"sim-{n}", "set", PAYLOAD, timeout=10)

    async def main() -> None:
        started = asyncio.Event()
        serving = asyncio.create_task(gateway.serve(started))
        await started.wait()
        await drive(one, load, 2.0)  # warm-up
        gc.collect()
        gc.freeze()  # what set-up left behind is not scanned again in the measurement
        print("BENCH " + json.dumps(await drive(one, load, seconds)), flush=True)
        gateway.stop()
        await serving

    run_uvloop(main)


def call_bare(port: int, load: str, seconds: float) -> None:
    from gmqtt import Client

    async def main() -> None:
        waiting: dict[bytes, asyncio.Future[bytes]] = {}
        client = Client("bare-requester")

        def on_message(client: Any, topic: str, payload: bytes, qos: int, props: Any) -> int:
            future = waiting.pop(props.get("correlation_data", [b""])[0], None)
            if future is not None and not future.done():
                future.set_result(payload)
            return 0

        client.on_message = on_message
        await client.connect("127.0.0.1", port, version=5)
        client.subscribe("bench/responses/#", qos=1)
        await asyncio.sleep(0.3)
        counter = iter(range(1 << 62))

        async def one(n: int) -> None:
            correlation = next(counter).to_bytes(8, "big")
            future = asyncio.get_running_loop().create_future()
            waiting[correlation] = future
            client.publish(
                f"devices/sim-{n}/commands/set",
                PAYLOAD,
                qos=1,
                response_topic="bench/responses/bare",
                correlation_data=correlation,
            )
            await asyncio.wait_for(future, 10)

        await drive(one, load, 2.0)  # warm-up
        gc.collect()
        gc.freeze()  # what set-up left behind is not scanned again in the measurement
        print("BENCH " + json.dumps(await drive(one, load, seconds)), flush=True)
        await client.disconnect()

    run_uvloop(main)


# --- the run ----------------------------------------------------------------------------------


def measure(name: str, port: int, load: str, seconds: float, db: str) -> dict[str, float]:
    command = [sys.executable, __file__, "--role", name, "--port", str(port)]
    command += ["--load", load, "--seconds", str(seconds), "--db", db]
    out = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300)
    for line in out.stdout.splitlines():
        if line.startswith("BENCH {"):
            result: dict[str, float] = json.loads(line[6:])
            return result
    raise RuntimeError(f"{name} reported nothing:\n{out.stdout}\n{out.stderr}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--role", default="main")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--load", default="c1,r2000,c100", help="c<callers>,r<commands/s>,...")
    parser.add_argument("--db", default="")
    args = parser.parse_args()
    if args.role == "devices":
        run_devices(args.port, DEVICES)
    elif args.role == "bare-gmqtt":
        call_bare(args.port, args.load, args.seconds)
    elif args.role.startswith("gateway"):
        call_gateway(args.role, args.port, args.load, args.seconds, args.db)
    else:
        run(args)


def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-commands-") as directory:
        broker, port = start_mosquitto(Path(directory))
        farm = subprocess.Popen(
            [sys.executable, __file__, "--role", "devices", "--port", str(port)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        try:
            assert farm.stdout is not None
            assert farm.stdout.readline().startswith("BENCH ready")
            for load in args.load.split(","):
                # Not counted: the first process after a pause measured slower, whichever it was.
                measure("bare-gmqtt", port, load, 2.0, "")
                results: dict[str, list[dict[str, float]]] = {name: [] for name in CONTENDERS}
                for round_ in range(args.rounds):
                    for name in CONTENDERS:
                        db = str(Path(directory) / f"history-{load}-{round_}.sqlite3")
                        results[name].append(measure(name, port, load, args.seconds, db))
                report(load, results)
        finally:
            farm.kill()
            broker.kill()


def report(load: str, results: dict[str, list[dict[str, float]]]) -> None:
    what = f"{load[1:]} callers" if load.startswith("c") else f"{load[1:]} commands/s offered"
    print(f"\n{what}, median of {len(results['bare-gmqtt'])} rounds:")
    print(f"{'contender':22} {'round trips/s':>14} {'p50 ms':>8} {'p99 ms':>8}")
    medians = {
        name: {key: statistics.median(r[key] for r in runs) for key in ("rate", "p50", "p99")}
        for name, runs in results.items()
    }
    for name, m in medians.items():
        failed = sum(r.get("failed", 0) for r in results[name])
        print(f"{name:22} {m['rate']:>14,.0f} {m['p50']:>8.2f} {m['p99']:>8.2f}  failed: {failed}")
        for error in sorted({e for r in results[name] for e in r.get("errors", [])}):
            print(f"{'':22} {error}")
    bare = medians["bare-gmqtt"]
    for name in ("gateway", "gateway-memory-store"):
        ratio = medians[name]["p99"] / bare["p99"]
        print(f"{name}: p99 {ratio:.2f}x the bare round trip (target <= 2x)")


if __name__ == "__main__":
    main()
