"""WebSocket echo: round trips/s and p99 latency with 50 connections, ours vs Channels.

Run from the project root:  .venv/bin/python benchmarks/ws_echo.py [--seconds 10]

Servers, each started here as a subprocess on a free port, one at a time:
- gateway:  `python -m gateway run` (uvicorn embedded, httptools, websockets-sansio) with our
            ProtocolTypeRouter / URLRouter / AsyncWebsocketConsumer;
- channels: `uvicorn` with its defaults and a stock Channels 4.3.2 AsyncWebsocketConsumer
            (Channels' in-memory layer configured, as its tutorial does);
- channels+sansio: the same Channels app on uvicorn with `--ws websockets-sansio`, so the
            consumer stack is compared on the same WebSocket implementation.
The load generator is a minimal raw-socket WebSocket client on uvloop, kept cheap so the
server, not the client, is what is measured: each connection sends a 32-byte text frame, waits
for the echo and sends again, for the given duration.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import statistics
import struct
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from benchmarks.net import run_loop, start_gateway, start_uvicorn

ROOT = Path(__file__).resolve().parent.parent
PAYLOAD = b"x" * 32
MASK = b"\x01\x02\x03\x04"
FRAME = (
    bytes([0x81, 0x80 | len(PAYLOAD)])
    + MASK
    + bytes(b ^ MASK[i % 4] for i, b in enumerate(PAYLOAD))
)


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)


class EchoClient(asyncio.Protocol):
    """One connection: handshake, then send a frame, await its echo, repeat until told to stop."""

    def __init__(self, stats: Stats, deadline_box: list[float], done: asyncio.Future[None]) -> None:
        self.stats, self.deadline_box, self.done = stats, deadline_box, done
        self.buffer = b""
        self.upgraded = False
        self.sent_at = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            (
                "GET /ws/echo/ HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\nOrigin: http://127.0.0.1\r\n\r\n"
            ).encode()
        )

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.upgraded:
            head, sep, rest = self.buffer.partition(b"\r\n\r\n")
            if not sep:
                return
            if b" 101 " not in head.split(b"\r\n", 1)[0]:
                self.done.set_exception(RuntimeError(f"handshake refused: {head[:80]!r}"))
                return
            self.upgraded, self.buffer = True, rest
            self._send()
        while len(self.buffer) >= 2:
            length = self.buffer[1] & 0x7F
            offset = 2
            if length == 126:
                if len(self.buffer) < 4:
                    return
                length, offset = struct.unpack("!H", self.buffer[2:4])[0], 4
            if len(self.buffer) < offset + length:
                return
            self.buffer = self.buffer[offset + length :]
            self.stats.latencies.append(time.perf_counter() - self.sent_at)
            if time.perf_counter() >= self.deadline_box[0]:
                self.transport.close()
                if not self.done.done():
                    self.done.set_result(None)
                return
            self._send()

    def _send(self) -> None:
        self.sent_at = time.perf_counter()
        self.transport.write(FRAME)


async def load(port: int, connections: int, seconds: float) -> tuple[float, float, float]:
    loop = asyncio.get_running_loop()
    stats = Stats()
    deadline_box = [float("inf")]
    dones = [loop.create_future() for _ in range(connections)]
    for done in dones:
        await loop.create_connection(
            lambda d=done: EchoClient(stats, deadline_box, d), "127.0.0.1", port
        )
    await asyncio.sleep(0.5)  # warm-up, then count from a clean slate
    stats.latencies.clear()
    start = time.perf_counter()
    deadline_box[0] = start + seconds
    await asyncio.wait_for(asyncio.gather(*dones), seconds + 30)
    elapsed = time.perf_counter() - start
    lat = sorted(stats.latencies)
    p50 = lat[len(lat) // 2] * 1000
    p99 = lat[int(len(lat) * 0.99)] * 1000
    return len(lat) / elapsed, p50, p99


def start_server(stack: str) -> tuple[subprocess.Popen[str], int]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "benchmarks.settings", "PYTHONPATH": str(ROOT)}
    if stack == "gateway":
        return start_gateway("benchmarks.ws_echo_apps:gateway_application", env, ROOT)
    env["BENCH_STACK"] = "channels"
    options = ["--log-level", "warning"]
    if stack == "channels+sansio":
        options += ["--ws", "websockets-sansio"]
    return start_uvicorn("benchmarks.ws_echo_apps:channels_application", env, ROOT, *options)


def measure(stack: str, connections: int, seconds: float, runs: int) -> tuple[float, float, float]:
    results = []
    for _ in range(runs):
        proc, port = start_server(stack)
        try:
            results.append(run_loop(load(port, connections, seconds)))
        finally:
            proc.terminate()
            proc.wait(30)
    rate = statistics.median(r[0] for r in results)
    return rate, statistics.median(r[1] for r in results), statistics.median(r[2] for r in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3, help="runs per stack, median reported")
    args = parser.parse_args()
    rows = {}
    for stack in ("gateway", "channels", "channels+sansio"):
        rows[stack] = measure(stack, args.connections, args.seconds, args.runs)
        rate, p50, p99 = rows[stack]
        print(
            f"{stack:16} {rate:10.0f} round trips/s   p50 {p50:6.2f} ms   p99 {p99:6.2f} ms",
            flush=True,
        )
    ours = rows["gateway"]
    for peer in ("channels", "channels+sansio"):
        theirs = rows[peer]
        print(
            f"gateway vs {peer}: {ours[0] / theirs[0]:.2f}x round trips/s, "
            f"{ours[2] / theirs[2]:.2f}x p99 (target >= 2x and <= 0.5x against 'channels')"
        )


if __name__ == "__main__":
    main()
