"""Twilio SMS webhook: signed requests/s into a handler that replies, ours vs a Django view.

Run from the project root:  .venv/bin/python benchmarks/sms_webhook.py [--seconds 8]

Servers, each started here as a subprocess on a free port, one at a time, same settings:
- gateway: `python -m gateway run` with the Twilio adapter (signature check with twilio's
           RequestValidator, MessageSid dedup, per-sender ordering) into an SMSFromRouter and an
           AsyncSmsConsumer that replies; the reply is answered as TwiML;
- django:  `uvicorn` (httptools, uvloop) serving Django's ASGI handler with a plain async view
           doing the same: RequestValidator check, read the form, answer MessagingResponse TwiML.
The load generator keeps 50 keep-alive connections busy with raw HTTP/1.1: each request is a
fresh Twilio form (new MessageSid, one of 1,000 senders) signed with RequestValidator; a
response counts only when it is 200 with the expected <Message>.
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
TOKEN = "benchmark-auth-token"
PATH = "/sms/twilio/"


# --- the two applications ------------------------------------------------------------------


def _gateway_app() -> Any:
    """ProtocolTypeRouter with an SMSFromRouter into an echoing AsyncSmsConsumer."""
    from django.core.asgi import get_asgi_application

    from gateway import AsyncSmsConsumer, ProtocolTypeRouter, SMSFromRouter, phone

    class Echo(AsyncSmsConsumer):
        async def receive(self, body: str) -> None:
            await self.reply(f"echo: {body}")

    echo = Echo.as_asgi()
    return ProtocolTypeRouter(
        {
            "http": cast(Any, get_asgi_application()),
            "sms": SMSFromRouter([phone("+44", echo), phone("+1", echo)], default=echo),
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


async def twilio_view(request: Any) -> Any:
    """The same handler as a plain async Django view."""
    from django.http import HttpResponse
    from twilio.request_validator import RequestValidator
    from twilio.twiml.messaging_response import MessagingResponse

    if request.method != "POST":
        return HttpResponse(status=405)
    signature = request.headers.get("X-Twilio-Signature", "")
    if not RequestValidator(TOKEN).validate(
        request.build_absolute_uri(), request.POST.dict(), signature
    ):
        return HttpResponse(status=403)
    if not request.POST.get("From") or not request.POST.get("MessageSid"):
        return HttpResponse(status=400)
    response = MessagingResponse()
    response.message(f"echo: {request.POST.get('Body', '')}")
    answer = HttpResponse(str(response), content_type="text/xml; charset=utf-8")
    answer["Content-Length"] = str(len(answer.content))  # as CommonMiddleware would
    return answer


# --- the load generator --------------------------------------------------------------------


def signed_request(port: int, validator: Any, n: int) -> bytes:
    form = {
        "MessageSid": "SM" + uuid.uuid4().hex,
        "AccountSid": "AC" + "0" * 32,
        "From": f"+4477009{n % 1000:05d}",
        "To": "+15005550006",
        "FromCountry": "GB",
        "Body": f"hello {n}",
        "NumMedia": "0",
    }
    body = urlencode(form).encode()
    signature = validator.compute_signature(f"http://127.0.0.1:{port}{PATH}", form)
    head = (
        f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"X-Twilio-Signature: {signature}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def connection(port: int, stop_at: float, counts: list[int], first: int) -> None:
    from twilio.request_validator import RequestValidator

    validator = RequestValidator(TOKEN)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    n = first
    while time.perf_counter() < stop_at:
        writer.write(signed_request(port, validator, n))
        head = await reader.readuntil(b"\r\n\r\n")
        found = re.search(rb"(?i)content-length: *(\d+)", head)
        if found is None:
            raise RuntimeError(f"response without content-length: {head!r}")
        length = int(found.group(1))
        body = await reader.readexactly(length)
        ok = head.startswith(b"HTTP/1.1 200") and f"echo: hello {n}".encode() in body
        counts[0 if ok else 1] += 1
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
        "DJANGO_SETTINGS_MODULE": "benchmarks.sms_settings",
        "PYTHONPATH": str(ROOT),
    }
    if stack == "gateway":
        return start_gateway("benchmarks.sms_webhook:gateway_application", env, ROOT)
    return start_uvicorn(
        "benchmarks.sms_webhook:django_application", env, ROOT,
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
