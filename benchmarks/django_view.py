"""A sync Django view under load: the gateway's reused threads beside Django's own thread
per request, under the gateway and under uvicorn alone, in one run.

Run from the project root:  .venv/bin/python benchmarks/django_view.py [--runs 3]

The view (django_view_settings.py) counts the rows of a table in a SQLite file and answers
``200``. Keep-alive connections (``--connections``, 50) keep it busy with raw HTTP/1.1 for
``--seconds`` (5); stacks interleaved, ``--runs`` times, medians printed, each with the
database's ``CONN_MAX_AGE`` at 0 (Django's default: a connection per request) and None
(kept; under Django's thread per request each new thread opens its own):

- **uvicorn**: uvicorn (httptools, uvloop, no access log) serving Django's ASGI handler, the
  peer: Django's thread per request;
- **gateway**: ``gateway run`` with the default ``GATEWAY["HTTP"]["SYNC_THREADS"]``;
- **gateway-per-request**: ``gateway run`` with ``SYNC_THREADS: None`` (Django's own threads).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.net import run_loop, start_gateway, start_uvicorn  # noqa: E402
from benchmarks.webhook_load import WebhookBench, django_asgi, lazy_app, load  # noqa: E402

SETTINGS = "benchmarks.django_view_settings"
STACKS = ("uvicorn", "gateway", "gateway-per-request")


def _request(port: int, n: int) -> bytes:
    return f"GET /devices/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()


def _ok(head: bytes, body: bytes, n: int) -> bool:
    return head.startswith(b"HTTP/1.1 200") and body.endswith(b" devices")


BENCH = WebhookBench(SETTINGS, __name__, _request, _ok)
django_application = lazy_app(django_asgi)


def _gateway_app() -> Any:
    from gateway import ProtocolTypeRouter

    return ProtocolTypeRouter({"http": django_asgi()})


gateway_application = lazy_app(_gateway_app)


def start(stack: str, database: str, keep: bool) -> tuple[Any, int]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": SETTINGS, "PYTHONPATH": str(ROOT),
           "DJANGO_VIEW_DB": database}  # fmt: skip
    if keep:
        env["DJANGO_VIEW_KEEP"] = "1"
    if stack == "uvicorn":
        return start_uvicorn(
            "benchmarks.django_view:django_application", env, ROOT,
            "--http", "httptools", "--loop", "uvloop", "--lifespan", "off",
            "--no-access-log", "--log-level", "warning",
        )  # fmt: skip
    if stack == "gateway-per-request":
        env["DJANGO_VIEW_SYNC_THREADS"] = "none"
    return start_gateway("benchmarks.django_view:gateway_application", env, ROOT)


def measure(stack: str, keep: bool, database: str, connections: int, seconds: float) -> float:
    proc, port = start(stack, database, keep)
    try:
        run_loop(load(BENCH, port, 4, 1.0))  # warm-up: imports, first requests
        rate, errors = run_loop(load(BENCH, port, connections, seconds))
    finally:
        proc.terminate()
        proc.wait(30)
    if errors:
        raise SystemExit(f"{stack}: {errors} bad responses")
    return float(rate)


def prepare(database: str) -> None:
    os.environ.update(DJANGO_SETTINGS_MODULE=SETTINGS, DJANGO_VIEW_DB=database)
    import django

    django.setup()
    from django.core.management import call_command

    from django_app.models.devices import Device

    call_command("migrate", verbosity=0)
    Device.objects.bulk_create(Device(device_id=f"d{i}") for i in range(100))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    rates: dict[tuple[str, bool], list[float]] = {
        (stack, keep): [] for keep in (False, True) for stack in STACKS
    }
    with tempfile.TemporaryDirectory() as folder:
        database = str(Path(folder) / "django_view.sqlite3")
        prepare(database)
        for _ in range(args.runs):
            for stack, keep in rates:  # interleaved, so drift on a shared machine hits all
                rate = measure(stack, keep, database, args.connections, args.seconds)
                rates[stack, keep].append(rate)
    print("| stack | CONN_MAX_AGE | requests/s (median) | runs | x uvicorn, same CONN_MAX_AGE |")
    print("|---|---|---|---|---|")
    for (stack, keep), values in rates.items():
        runs = ", ".join(f"{value:.0f}" for value in values)
        median = statistics.median(values)
        peer = statistics.median(rates["uvicorn", keep])
        age = "None" if keep else "0"
        print(f"| {stack} | {age} | {median:.0f} | {runs} | {median / peer:.2f}x |")


if __name__ == "__main__":
    main()
