"""Inbound-mail webhooks: signed Mailgun posts/s into a consumer, ours vs anymail's own view.

Run from the project root:  .venv/bin/python benchmarks/email_webhook.py [--seconds 8]

Servers, each started here as a subprocess on a free port, one at a time, same settings:
- gateway: `python -m gateway run` with `protocol_adapters.email_webhooks.EmailWebhookAdapter`
           (PROVIDER mailgun: anymail's MailgunInboundWebhookView checks the signature and
           parses the post) into an EmailToRouter and an AsyncEmailConsumer that reads the
           subject and text; 200 only after it returned;
- django:  `uvicorn` (httptools, uvloop) serving Django's ASGI handler with anymail's
           MailgunInboundWebhookView at the same path and a receiver of anymail's ``inbound``
           signal doing the same reading (anymail's documented set-up).
The load generator keeps 50 keep-alive connections busy with raw HTTP/1.1: each request is
Mailgun's "forward" post of a fresh message (new Message-ID and token, raw MIME in
``body-mime``, multipart/form-data) signed with HMAC-SHA256 of timestamp + token, as Mailgun
documents; a response counts only when it is 200.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import os
import re
import statistics
import subprocess
import time
import uuid
from pathlib import Path

from benchmarks.email_webhook_settings import SIGNING_KEY
from benchmarks.net import run_loop, start_gateway, start_uvicorn

ROOT = Path(__file__).resolve().parent.parent
PATH = "/email/mailgun/"


# --- the load generator --------------------------------------------------------------------


def _mime(n: int) -> str:
    return (
        "From: Alice <alice@customer.test>\r\nTo: support@example.com\r\n"
        f"Subject: Ticket {n}\r\nMessage-ID: <{uuid.uuid4().hex}@customer.test>\r\n"
        "Date: Thu, 03 Dec 2026 06:00:00 +0000\r\nMIME-Version: 1.0\r\n"
        'Content-Type: text/plain; charset="utf-8"\r\n\r\n'
        f"Please help with ticket {n}.\r\n" + "The printer is on fire. " * 40 + "\r\n"
    )


def signed_request(port: int, n: int) -> bytes:
    token = uuid.uuid4().hex + uuid.uuid4().hex
    timestamp = str(int(time.time()))
    signature = hmac.new(
        SIGNING_KEY.encode(), f"{timestamp}{token}".encode(), hashlib.sha256
    ).hexdigest()
    fields = {
        "recipient": "support@example.com",
        "sender": "alice@customer.test",
        "timestamp": timestamp,
        "token": token,
        "signature": signature,
        "body-mime": _mime(n),
    }
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in fields.items()
    ]
    body = ("".join(parts) + f"--{boundary}--\r\n").encode()
    head = (
        f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def read_body(reader: asyncio.StreamReader, head: bytes) -> bytes:
    """The body after `head`: by Content-Length, or chunked (anymail's view sets no length)."""
    found = re.search(rb"(?i)content-length: *(\d+)", head)
    if found is not None:
        return await reader.readexactly(int(found.group(1)))
    if not re.search(rb"(?i)transfer-encoding: *chunked", head):
        raise RuntimeError(f"response without a length: {head!r}")
    chunks = []
    while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
        chunks.append(await reader.readexactly(size + 2))
    await reader.readuntil(b"\r\n")
    return b"".join(chunk[:-2] for chunk in chunks)


async def connection(port: int, stop_at: float, counts: list[int], first: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    n = first
    while time.perf_counter() < stop_at:
        writer.write(signed_request(port, n))
        head = await reader.readuntil(b"\r\n\r\n")
        await read_body(reader, head)
        counts[0 if head.startswith(b"HTTP/1.1 200") else 1] += 1
        n += 1
    writer.close()


async def load(port: int, connections: int, seconds: float) -> tuple[float, int]:
    counts = [0, 0]
    start = time.perf_counter()
    stop_at = start + seconds
    await asyncio.gather(
        *(connection(port, stop_at, counts, i * 10_000_000) for i in range(connections))
    )
    return counts[0] / (time.perf_counter() - start), counts[1]


# --- servers and runs ----------------------------------------------------------------------


def start_server(stack: str) -> tuple[subprocess.Popen[str], int]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "benchmarks.email_webhook_settings",
        "PYTHONPATH": str(ROOT),
    }
    if stack == "gateway":
        return start_gateway("benchmarks.email_webhook_apps:gateway_application", env, ROOT)
    return start_uvicorn(
        "benchmarks.email_webhook_apps:django_application", env, ROOT,
        "--http", "httptools", "--loop", "uvloop", "--lifespan", "off",
        "--no-access-log", "--log-level", "warning",
    )  # fmt: skip


def measure(stack: str, connections: int, seconds: float) -> tuple[float, int]:
    proc, port = start_server(stack)
    try:
        run_loop(load(port, 4, 1.0))  # warm-up: imports, first requests
        result: tuple[float, int] = run_loop(load(port, connections, seconds))
        return result
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3, help="runs per stack, median reported")
    args = parser.parse_args()
    rates: dict[str, list[float]] = {"gateway": [], "django": []}
    for _ in range(args.runs):
        for stack in rates:  # interleaved, so drift on a shared machine hits both
            rate, errors = measure(stack, args.connections, args.seconds)
            if errors:
                raise SystemExit(f"{stack}: {errors} bad responses")
            rates[stack].append(rate)
    for stack, values in rates.items():
        runs = ", ".join(f"{value:.0f}" for value in values)
        print(f"{stack:8} {statistics.median(values):8.0f} webhooks/s  (runs: {runs})")
    ratio = statistics.median(rates["gateway"]) / statistics.median(rates["django"])
    print(f"gateway vs anymail's view: {ratio:.2f}x webhooks/s (target >= 1.0x)")


if __name__ == "__main__":
    main()
