"""Memory per idle MQTT device: the embedded broker beside Mosquitto, in one run.

Run from the project root:  .venv/bin/python benchmarks/mqtt_memory.py [--clients 10000]

Each round starts, one after the other and each on a free 127.0.0.1 port:

- gateway: ``gateway run`` of this module's application with `mqtt_memory_settings` (the
  embedded broker alone, uvloop, no HTTP): anonymous logins with the default ACL
  ``devices/{device_id}/#`` (the client id names the device), the connection caps raised;
- mosquitto: the installed binary, ``allow_anonymous true``, no persistence;
- gateway-previous (with --previous-tree DIR, a checkout of an earlier commit): the gateway
  run from that tree, to compare the embedded broker with an earlier one in the same run.

A device connects with its own client id (``dev-00042``), keep-alive 60 s, subscribes at
QoS 1 to its command topic ``devices/dev-00042/commands``, then stays idle (a PINGREQ every
30 s, as its keep-alive asks). Clients are raw sockets writing pre-encoded CONNECT and
SUBSCRIBE packets, spread over --procs client processes, each from its own 127.0.0.x source
address. Once every client has its CONNACK and SUBACK and --settle seconds passed, the
broker's memory is read from /proc (``smaps_rollup``: RSS, PSS, USS = private pages) and
compared with the reading taken before the clients connected (after a warm-up of
--warmup clients that connect and leave). Per device = (after - before) / clients.

Both session kinds are measured (--sessions clean persistent by default); rounds alternate
which broker goes first, and the median over --rounds is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.net import free_port, run_loop, wait_port  # noqa: E402

SETTINGS = "benchmarks.mqtt_memory_settings"
BROKERS = ("gateway", "mosquitto", "gateway-previous")
KEEP_ALIVE = 60
PING_EVERY = 30.0


# --- the gateway's application ---------------------------------------------------------------


def _application() -> Any:
    from gateway import AsyncMqttConsumer, MqttTopicRouter, ProtocolTypeRouter, topic

    class Telemetry(AsyncMqttConsumer):
        async def receive(self, payload: bytes) -> None:
            pass

    return ProtocolTypeRouter(
        {"mqtt": MqttTopicRouter([topic("devices/{device_id}/telemetry", Telemetry.as_asgi())])}
    )


def __getattr__(name: str) -> Any:
    # `gateway run` reads `application` once Django is set up; the client processes never do.
    if name == "application":
        return _application()
    raise AttributeError(name)


# --- packets ---------------------------------------------------------------------------------


def _text(value: str) -> bytes:
    data = value.encode()
    return len(data).to_bytes(2, "big") + data


def _packet(header: int, body: bytes) -> bytes:
    length, size = bytearray(), len(body)
    while True:
        byte, size = size & 0x7F, size >> 7
        length.append(byte | (0x80 if size else 0))
        if not size:
            return bytes((header,)) + bytes(length) + body


def device_packets(client_id: str, *, clean: bool) -> bytes:
    """CONNECT (MQTT 3.1.1, keep-alive 60) then SUBSCRIBE to its command topic at QoS 1."""
    connect = _text("MQTT") + bytes((4, 0x02 if clean else 0)) + KEEP_ALIVE.to_bytes(2, "big")
    subscribe = (1).to_bytes(2, "big") + _text(f"devices/{client_id}/commands") + b"\x01"
    return _packet(0x10, connect + _text(client_id)) + _packet(0x82, subscribe)


EXPECTED = b"\x20\x02\x00\x00\x90\x03\x00\x01\x01"
"""CONNACK (no session present, accepted) and SUBACK (packet id 1, QoS 1 granted)."""


# --- the client side (one process per source address) ----------------------------------------


async def _device(
    port: int, source: str, client_id: str, clean: bool, limit: asyncio.Semaphore
) -> socket.socket:
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setblocking(False)
    sock.bind((source, 0))
    async with limit:
        await loop.sock_connect(sock, ("127.0.0.1", port))
        await loop.sock_sendall(sock, device_packets(client_id, clean=clean))
        answer = b""
        while len(answer) < len(EXPECTED):
            chunk = await loop.sock_recv(sock, len(EXPECTED) - len(answer))
            if not chunk:
                raise RuntimeError(f"{client_id}: closed after {answer!r}")
            answer += chunk
    if answer != EXPECTED:
        raise RuntimeError(f"{client_id}: unexpected answer {answer!r}")
    return sock


async def _stay_idle(sockets: list[socket.socket]) -> None:
    """Keep the devices alive (PINGREQ every PING_EVERY seconds) until stdin closes."""
    loop = asyncio.get_running_loop()
    done = loop.run_in_executor(None, sys.stdin.read)
    while not done.done():
        await asyncio.wait([done], timeout=PING_EVERY)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.recv(4096)  # last round's PINGRESPs
            with contextlib.suppress(OSError):
                sock.send(b"\xc0\x00")


async def _clients(port: int, source: str, first: int, count: int, clean: bool) -> None:
    limit = asyncio.Semaphore(64)
    ids = [f"dev-{n:05d}" for n in range(first, first + count)]
    sockets = await asyncio.gather(*(_device(port, source, i, clean, limit) for i in ids))
    print(f"ready {len(sockets)}", flush=True)
    await _stay_idle(list(sockets))
    for sock in sockets:
        sock.close()


# --- the driver ------------------------------------------------------------------------------


def memory(pid: int) -> dict[str, int]:
    """RSS, PSS and USS of a process, in KiB."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value = line.split(":", 1)
        fields[name] = int(value.split()[0])
    uss = fields["Private_Clean"] + fields["Private_Dirty"]
    return {"rss": fields["Rss"], "pss": fields["Pss"], "uss": uss}


def start_gateway(port: int, tree: Path = ROOT) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": SETTINGS, "PYTHONPATH": str(tree),
           "MQTT_MEMORY_PORT": str(port)}  # fmt: skip
    command = [sys.executable, "-m", "gateway", "run", "benchmarks.mqtt_memory:application",
               "--log-level", "warning"]  # fmt: skip
    return subprocess.Popen(command, cwd=tree, env=env)


def start_broker(name: str, port: int, args: argparse.Namespace, folder: Path) -> Any:
    if name == "mosquitto":
        return start_mosquitto(port, folder)
    return start_gateway(port, args.previous_tree if name == "gateway-previous" else ROOT)


def start_mosquitto(port: int, directory: Path) -> subprocess.Popen[bytes]:
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    conf = directory / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        "max_connections -1\nlog_type error\n"
    )
    return subprocess.Popen([binary, "-c", str(conf)], stderr=subprocess.DEVNULL)


def connect_clients(
    port: int, first: int, count: int, procs: int, clean: bool
) -> list[subprocess.Popen[str]]:
    """`count` idle devices over `procs` processes; returns once all are subscribed."""
    children, share = [], -(-count // procs)
    for index in range(procs):
        start, size = first + index * share, min(share, count - index * share)
        if size <= 0:
            break
        session = "clean" if clean else "persistent"
        command = [sys.executable, __file__, "--role", "clients", "--port", str(port),
                   "--source", f"127.0.0.{2 + index}", "--first", str(start),
                   "--clients", str(size), "--sessions", session]  # fmt: skip
        children.append(subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         text=True))  # fmt: skip
    for child in children:
        assert child.stdout is not None
        line = child.stdout.readline()
        if not line.startswith("ready"):
            raise RuntimeError(f"a client process failed: {line!r}")
    return children


def release(children: list[subprocess.Popen[str]]) -> None:
    for child in children:
        assert child.stdin is not None
        child.stdin.close()
    for child in children:
        child.wait(60)


def one_broker(name: str, clean: bool, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    port = free_port()
    proc = start_broker(name, port, args, folder)
    try:
        wait_port(port)
        release(connect_clients(port, 10**6, args.warmup, 1, clean))
        time.sleep(args.settle)
        before = memory(proc.pid)
        started = time.perf_counter()
        children = connect_clients(port, 0, args.clients, args.procs, clean)
        connect_time = time.perf_counter() - started
        time.sleep(args.settle)
        after = memory(proc.pid)
        release(children)
    finally:
        proc.terminate()
        proc.wait(30)
    per = {k: (after[k] - before[k]) / args.clients for k in after}
    return {"before": before, "after": after, "per": per, "connect": connect_time}


def _median(rows: list[dict[str, Any]], key: str, field: str) -> float:
    return statistics.median(row[key][field] for row in rows)


def report(results: dict[tuple[str, str], list[dict[str, Any]]], clients: int) -> None:
    print(f"\n{clients} idle devices; KiB per device = (after - before) / devices; medians\n")
    print("| session | broker | RSS before (MiB) | RSS after (MiB) | RSS/device (KiB) "
          "| PSS/device | USS/device | connect all (s) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for (session, name), rows in results.items():
        connect = statistics.median(row["connect"] for row in rows)
        print(f"| {session} | {name} | {_median(rows, 'before', 'rss') / 1024:.1f} "
              f"| {_median(rows, 'after', 'rss') / 1024:.1f} "
              f"| **{_median(rows, 'per', 'rss'):.2f}** | {_median(rows, 'per', 'pss'):.2f} "
              f"| {_median(rows, 'per', 'uss'):.2f} | {connect:.1f} |")  # fmt: skip
    medians = {key: _median(rows, "per", "rss") for key, rows in results.items()}
    for (session, name), value in medians.items():
        ours = medians.get((session, "gateway"))
        if name != "gateway" and ours is not None:
            print(f"\n{session}: gateway / {name} RSS per device = {ours / value:.2f}x")
    print("\nper round (RSS KiB/device):")
    for (session, name), rows in results.items():
        print(f"  {session} {name}: " + ", ".join(f"{r['per']['rss']:.2f}" for r in rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--role", choices=("driver", "clients"), default="driver")
    parser.add_argument("--clients", type=int, default=10_000)
    parser.add_argument("--procs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--settle", type=float, default=5.0)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--sessions", nargs="+", choices=("clean", "persistent"),
                        default=["clean", "persistent"])  # fmt: skip
    parser.add_argument("--brokers", nargs="+", choices=BROKERS, default=list(BROKERS[:2]))
    parser.add_argument("--previous-tree", type=Path, help="for gateway-previous")
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--source", help=argparse.SUPPRESS)
    parser.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by the brokers
    if args.role == "clients":
        clean = args.sessions == ["clean"]
        run_loop(_clients(args.port, args.source, args.first, args.clients, clean))
        return
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-mqtt-memory-") as folder:
        for round_number in range(args.rounds):
            order = args.brokers if round_number % 2 == 0 else args.brokers[::-1]
            for session in args.sessions:
                for name in order:
                    row = one_broker(name, session == "clean", args, Path(folder))
                    results.setdefault((session, name), []).append(row)
                    print(f"round {round_number + 1} {session} {name}: "
                          f"{row['per']['rss']:.2f} KiB RSS/device, "
                          f"connected in {row['connect']:.1f}s", flush=True)  # fmt: skip
    report(dict(sorted(results.items())), args.clients)


if __name__ == "__main__":
    main()
