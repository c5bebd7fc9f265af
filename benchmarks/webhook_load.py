"""What the webhook benchmarks share: two stacks, one load of signed requests, the runs.

A webhook benchmark (`sms_webhook.py`, `sms_vonage.py`, `email_webhook.py`) describes itself
as a `WebhookBench`: its settings module, the gateway's and Django's applications, how to
build the n-th request and how to tell a good answer; `main` does the rest, the same for all:
each stack started as a subprocess on a free port, one at a time; a warm-up; keep-alive
connections kept busy with raw HTTP/1.1 for some seconds; runs interleaved so that drift on
a shared machine hits both stacks; the medians and their ratio printed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.net import run_loop, start_gateway, start_uvicorn

ROOT = Path(__file__).resolve().parent.parent
STACKS = ("gateway", "django")
FORM = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class WebhookBench:
    """One side-by-side webhook benchmark."""

    settings: str
    """The DJANGO_SETTINGS_MODULE of both stacks."""
    apps: str
    """The module whose ``gateway_application`` `gateway run` serves and whose
    ``django_application`` (Django's ASGI handler) uvicorn serves."""
    request: Callable[[int, int], bytes]
    """The n-th raw HTTP/1.1 request to the server on a port: ``request(port, n)``."""
    ok: Callable[[bytes, bytes, int], bool]
    """Whether the answer (head, body) to the n-th request counts."""
    unit: str = "requests/s"
    peer: str = "django view"


def lazy_app(build: Callable[[], Any]) -> Any:
    """An ASGI application built on its first call: a benchmark's settings import its module
    before Django is set up."""
    built: list[Any] = []

    async def application(scope: Any, receive: Any, send: Any) -> None:
        if not built:
            built.append(build())
        await built[0](scope, receive, send)

    return application


def django_asgi() -> Any:
    """Django's ASGI handler, once Django is set up."""
    import django

    django.setup()
    from django.core.asgi import get_asgi_application

    return get_asgi_application()


def sms_gateway_app(consumer: Any) -> Any:
    """Django for ``http``, and an SMSFromRouter into `consumer` (an ASGI app) for ``sms``."""
    from gateway import ProtocolTypeRouter, SMSFromRouter, phone

    routes = SMSFromRouter([phone("+44", consumer), phone("+1", consumer)], default=consumer)
    return ProtocolTypeRouter({"http": django_asgi(), "sms": routes})


def post(port: int, path: str, body: bytes, content_type: str, **headers: str) -> bytes:
    """A raw HTTP/1.1 POST of `body` to 127.0.0.1:`port`; `headers` as ``X_Name="value"``."""
    lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", f"Content-Type: {content_type}"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def adapter_settings(name: str, backend: str, options: dict[str, Any]) -> dict[str, Any]:
    """The GATEWAY setting of a benchmark: an ephemeral HTTP port and one adapter."""
    return {"HTTP": {"PORT": 0}, "ADAPTERS": {name: {"BACKEND": backend, "OPTIONS": options}}}


async def read_body(reader: asyncio.StreamReader, head: bytes) -> bytes:
    """The body after `head`: by Content-Length, or chunked (anymail's view sets no length);
    none for a 204."""
    found = re.search(rb"(?i)content-length: *(\d+)", head)
    if found is not None:
        return await reader.readexactly(int(found.group(1)))
    if head.startswith(b"HTTP/1.1 204"):
        return b""
    if not re.search(rb"(?i)transfer-encoding: *chunked", head):
        raise RuntimeError(f"response without a length: {head!r}")
    chunks = []
    while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
        chunks.append(await reader.readexactly(size + 2))
    await reader.readuntil(b"\r\n")
    return b"".join(chunk[:-2] for chunk in chunks)


async def _connection(
    bench: WebhookBench, port: int, stop_at: float, counts: list[int], first: int
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    n = first
    while time.perf_counter() < stop_at:
        writer.write(bench.request(port, n))
        head = await reader.readuntil(b"\r\n\r\n")
        body = await read_body(reader, head)
        counts[0 if bench.ok(head, body, n) else 1] += 1
        n += 1
    writer.close()


async def load(
    bench: WebhookBench, port: int, connections: int, seconds: float
) -> tuple[float, int]:
    """Good answers per second over `connections` for `seconds`, and the count of bad ones."""
    counts = [0, 0]
    start = time.perf_counter()
    stop_at = start + seconds
    await asyncio.gather(
        *(_connection(bench, port, stop_at, counts, i * 10_000_000) for i in range(connections))
    )
    return counts[0] / (time.perf_counter() - start), counts[1]


def start_server(bench: WebhookBench, stack: str) -> tuple[subprocess.Popen[str], int]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": bench.settings, "PYTHONPATH": str(ROOT)}
    if stack == "gateway":
        return start_gateway(f"{bench.apps}:gateway_application", env, ROOT)
    return start_uvicorn(
        f"{bench.apps}:django_application", env, ROOT,
        "--http", "httptools", "--loop", "uvloop", "--lifespan", "off",
        "--no-access-log", "--log-level", "warning",
    )  # fmt: skip


def measure(bench: WebhookBench, stack: str, connections: int, seconds: float) -> tuple[float, int]:
    proc, port = start_server(bench, stack)
    try:
        run_loop(load(bench, port, 4, 1.0))  # warm-up: imports, first requests
        result: tuple[float, int] = run_loop(load(bench, port, connections, seconds))
        return result
    finally:
        proc.terminate()
        proc.wait(30)


def main(bench: WebhookBench, doc: str | None) -> None:
    """The command line of a webhook benchmark: --seconds, --connections, --runs."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3, help="runs per stack, median reported")
    args = parser.parse_args()
    rates: dict[str, list[float]] = {stack: [] for stack in STACKS}
    for _ in range(args.runs):
        for stack in rates:  # interleaved, so drift on a shared machine hits both
            rate, errors = measure(bench, stack, args.connections, args.seconds)
            if errors:
                raise SystemExit(f"{stack}: {errors} bad responses")
            rates[stack].append(rate)
    for stack, values in rates.items():
        runs = ", ".join(f"{value:.0f}" for value in values)
        print(f"{stack:8} {statistics.median(values):8.0f} {bench.unit}  (runs: {runs})")
    ratio = statistics.median(rates["gateway"]) / statistics.median(rates["django"])
    each = ", ".join(f"{ours / theirs:.2f}x" for ours, theirs in zip(*rates.values(), strict=True))
    print(f"gateway vs {bench.peer}: {ratio:.2f}x {bench.unit} (target >= 1.0x; runs: {each})")
