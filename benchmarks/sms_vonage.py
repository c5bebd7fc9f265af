"""Vonage SMS webhook: signed requests/s into the same handler, ours vs a plain Django view.

Run from the project root:  .venv/bin/python benchmarks/sms_vonage.py [--seconds 8]

Servers, each started here as a subprocess on a free port, one at a time, same settings:
- gateway: `python -m gateway run` with the Vonage adapter (signature check with the vonage
           SDK's Auth.check_signature, messageId dedup, per-sender ordering) into an
           SMSFromRouter and an AsyncSmsConsumer that calls `handle`; answered 204;
- django:  `uvicorn` (httptools, uvloop) serving Django's ASGI handler with a plain async view
           doing the same: Auth.check_signature, the same 405 / 403 / 400 checks, `handle`,
           204.
Vonage has no reply format in its webhook answer (replies go out through its SMS API after
the answer), so `handle` only computes its reply text: the webhook path is what is measured.
The load generator keeps 50 keep-alive connections busy with raw HTTP/1.1: each request is a
fresh inbound-message form (new messageId, one of 1,000 senders) signed as Vonage signs it
(HMAC-SHA256, the SDK's sign_params); a response counts only when it is 204.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlencode

from benchmarks.net import run_loop, start_gateway, start_uvicorn

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "benchmark-key"
SECRET = "benchmark-signature-secret"
PATH = "/sms/vonage/"


def handle(sender: str, body: str) -> str:
    """The application's work on one text, the same in both stacks."""
    return f"echo to {sender}: {body}"


# --- the two applications ------------------------------------------------------------------


def _gateway_app() -> Any:
    """ProtocolTypeRouter with an SMSFromRouter into an AsyncSmsConsumer calling `handle`."""
    from django.core.asgi import get_asgi_application

    from gateway import AsyncSmsConsumer, ProtocolTypeRouter, SMSFromRouter, phone

    class Handler(AsyncSmsConsumer):
        async def receive(self, body: str) -> None:
            handle(self.sender, body)

    handler = Handler.as_asgi()
    return ProtocolTypeRouter(
        {
            "http": cast(Any, get_asgi_application()),
            "sms": SMSFromRouter([phone("+44", handler), phone("+1", handler)], default=handler),
        }
    )


def _django_app() -> Any:
    import django

    django.setup()
    from django.core.asgi import get_asgi_application

    return get_asgi_application()


_apps: dict[str, Any] = {}


# Built on first call: this module is imported by its settings, before Django is set up.
async def gateway_application(scope: Any, receive: Any, send: Any) -> None:
    app = _apps.get("gateway") or _apps.setdefault("gateway", _gateway_app())
    await app(scope, receive, send)


async def django_application(scope: Any, receive: Any, send: Any) -> None:
    app = _apps.get("django") or _apps.setdefault("django", _django_app())
    await app(scope, receive, send)


def _auth() -> Any:
    from vonage import Auth

    if "auth" not in _apps:
        _apps["auth"] = Auth(api_key=API_KEY, signature_secret=SECRET, signature_method="sha256")
    return _apps["auth"]


async def vonage_view(request: Any) -> Any:
    """The same handler as a plain async Django view."""
    from django.http import HttpResponse

    if request.method not in ("GET", "POST"):
        return HttpResponse(status=405)
    fields = request.POST.dict() if request.method == "POST" else request.GET.dict()
    if "sig" not in fields or not _auth().check_signature(dict(fields)):
        return HttpResponse(status=403)
    if not all(fields.get(name) for name in ("msisdn", "to", "messageId")):
        return HttpResponse(status=400)
    handle("+" + fields["msisdn"], fields.get("text", ""))
    return HttpResponse(status=204)


# --- the load generator --------------------------------------------------------------------


def signed_request(port: int, auth: Any, n: int) -> bytes:
    fields = {
        "msisdn": f"4477009{n % 1000:05d}",
        "to": "447700900001",
        "messageId": uuid.uuid4().hex[:16].upper(),
        "text": f"hello {n}",
        "type": "text",
        "keyword": "HELLO",
        "api-key": API_KEY,
        "message-timestamp": "2026-12-03 06:00:00",
        "timestamp": str(int(time.time())),
        "nonce": uuid.uuid4().hex,
    }
    fields["sig"] = auth.sign_params(dict(fields))
    body = urlencode(fields).encode()
    head = (
        f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def connection(port: int, stop_at: float, counts: list[int], first: int) -> None:
    auth = _auth()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    n = first
    while time.perf_counter() < stop_at:
        writer.write(signed_request(port, auth, n))
        head = await reader.readuntil(b"\r\n\r\n")
        found = re.search(rb"(?i)content-length: *(\d+)", head)
        length = int(found.group(1)) if found else 0
        await reader.readexactly(length)
        counts[0 if head.startswith(b"HTTP/1.1 204") else 1] += 1
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
        "DJANGO_SETTINGS_MODULE": "benchmarks.sms_vonage_settings",
        "PYTHONPATH": str(ROOT),
    }
    if stack == "gateway":
        return start_gateway("benchmarks.sms_vonage:gateway_application", env, ROOT)
    return start_uvicorn(
        "benchmarks.sms_vonage:django_application", env, ROOT,
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
        print(f"{stack:8} {statistics.median(values):8.0f} requests/s  (runs: {runs})")
    ratio = statistics.median(rates["gateway"]) / statistics.median(rates["django"])
    print(f"gateway vs django view: {ratio:.2f}x requests/s (target >= 1.0x)")


if __name__ == "__main__":
    main()
