"""Soak: the demo under steady mixed load for a long time, sampled for leaks and slow-downs.

```console
$ .venv/bin/python benchmarks/soak.py --minutes 60     # 1,000 devices, a sample a minute
```

One ``gateway run`` of the demo (examples/demo, `benchmarks/soak_settings.py`: free ports, a
fresh SQLite database in a temporary directory) serves, for ``--minutes``:

- MQTT: ``--devices`` simulated devices (``gateway simulate``, real gmqtt clients in another
  process) publishing ``--mqtt-rate`` readings per second in all, into the embedded broker;
- WebSocket: ``--dashboards`` dashboard clients receiving every ``group_send`` (readings,
  tickets, texts, notes), one of them sending notes;
- SMTP (smtplib) and signed Twilio and Vonage webhooks (`benchmarks/soak_load.py`).

Every ``--interval`` seconds it writes a row of the CSV: the gateway process's RSS and open file
descriptors (from /proc), its asyncio task count (``gateway_asyncio_tasks`` in /-/metrics),
p50/p99 latency per protocol over the interval, and errors so far; then a PNG plot of it.

Verdict, over the samples after ``--warmup`` seconds: a line y = a + b·t is fitted to each
series (Theil-Sen: b is the median of the slopes between every two samples, so that one odd
sample cannot tilt it), and its drift is the line's rise over that window relative to the
series' median, b·(t_last - t_first) / median. RSS and tasks are flat when |drift| is at most
``--max-drift`` (5 %), tasks also when the line's rise is at most 8 tasks (`soak_report.py`'s
``TASKS_FLOOR``: a few dozen tasks move by 5 % with three requests in flight); each protocol's
p99 when its drift is at most ``--max-latency-drift`` (+50 %: p99 over one interval of a few
dozen to a few hundred operations moves that much on a shared 2-core host with nothing growing;
a leak or a growing queue rises without bound). Any error fails the run too, and so does a
sample with fewer than half the readings the devices sent.
Exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.net import free_port, wait_port
from benchmarks.soak_load import PROTOCOLS, Load, Ports, Rates
from benchmarks.soak_report import plot, verdict

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "examples" / "demo"
PASSWORD = "soak-device-password"
RESOURCES = ("rss_mib", "fds", "tasks")
COLUMNS = ["elapsed_s", *RESOURCES, "errors", "delivered"] + [
    f"{p}_{q}_ms" for p in PROTOCOLS for q in ("p50", "p99", "n")
]


@dataclass
class Options:
    minutes: float = 60.0
    interval: float = 60.0
    warmup: float = 300.0
    devices: int = 1000
    mqtt_rate: float = 100.0
    rates: Rates = field(default_factory=Rates)
    max_drift: float = 0.05
    max_latency_drift: float = 0.5


def parse(argv: Sequence[str] | None = None) -> tuple[Options, Path]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add = parser.add_argument
    add("--minutes", type=float, default=60.0, help="how long the load runs (default 60)")
    add("--interval", type=float, default=60.0, help="seconds between samples (default 60)")
    add("--warmup", type=float, default=300.0, help="seconds left out of the verdict (300)")
    add("--devices", type=int, default=1000, help="simulated MQTT devices (default 1000)")
    add("--mqtt-rate", type=float, default=100.0, help="readings/s, all devices (100)")
    add("--smtp-rate", type=float, default=1.0, help="mails/s (default 1)")
    add("--sms-rate", type=float, default=4.0, help="webhooks/s, Twilio and Vonage (4)")
    add("--note-rate", type=float, default=2.0, help="dashboard notes/s (default 2)")
    add("--dashboards", type=int, default=20, help="WebSocket dashboard clients (20)")
    add("--out", type=Path, default=ROOT / "benchmarks" / "results" / "soak")
    args = parser.parse_args(argv)
    rates = Rates(args.smtp_rate, args.sms_rate, args.note_rate, args.dashboards)
    options = Options(args.minutes, args.interval, args.warmup, args.devices, args.mqtt_rate, rates)
    return options, args.out


# --- the gateway under soak ------------------------------------------------------------------


@dataclass
class Gateway:
    proc: subprocess.Popen[bytes]
    ports: Ports


def demo_env(workdir: Path, http: int, mqtt: int, smtp: int) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(DEMO)]),
        "DJANGO_SETTINGS_MODULE": "benchmarks.soak_settings",
        "DEMO_HTTP_PORT": str(http),
        "DEMO_MQTT_PORT": str(mqtt),
        "DEMO_SMTP_PORT": str(smtp),
        "DEMO_DB": str(workdir / "soak.sqlite3"),
        "DEMO_SENT_MAIL": str(workdir / "sent-mail"),
    }


PROVISION = """
import django, sys
django.setup()
from django_app.models.devices import Device, DeviceCredential
from django.contrib.auth.hashers import make_password
count, password = int(sys.argv[1]), sys.argv[2]
ids = [f"soak-{n}" for n in range(1, count + 1)]
Device.objects.bulk_create([Device(device_id=i, name=i) for i in ids], ignore_conflicts=True)
hashed = make_password(password)
DeviceCredential.objects.bulk_create(
    [DeviceCredential(device=d, password=hashed) for d in Device.objects.filter(device_id__in=ids)]
)
"""


@contextmanager
def running_gateway(devices: int, log: Path) -> Iterator[Gateway]:
    """The demo on free ports with a fresh database and `devices` credentials, until exit."""
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        workdir = Path(tmp)
        http, mqtt, smtp = free_port(), free_port(), free_port()
        env = demo_env(workdir, http, mqtt, smtp)
        python = sys.executable
        subprocess.run([python, "manage.py", "migrate", "-v", "0"], cwd=DEMO, env=env, check=True)
        provision = [python, "-c", PROVISION, str(devices), PASSWORD]
        subprocess.run(provision, cwd=DEMO, env=env, check=True)
        with log.open("wb") as output:
            proc = subprocess.Popen(
                [python, "-m", "gateway", "run", "demo.asgi:application"],
                cwd=DEMO, env=env, stdout=output, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            for port in (http, mqtt, smtp):
                wait_port(port, attempts=1200)
            ports = Ports(
                http, smtp, mqtt, "demo-twilio-auth-token", "demo-vonage-key",
                "demo-vonage-signature-secret",
            )  # fmt: skip
            yield Gateway(proc, ports)
        finally:
            stop(proc)
            shutil.rmtree(workdir / "sent-mail", ignore_errors=True)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def start_devices(options: Options, mqtt_port: int, log: Path) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "gateway", "simulate", "--devices", str(options.devices),
        "--rate", str(options.mqtt_rate), "--broker", f"mqtt://127.0.0.1:{mqtt_port}",
        "--password", PASSWORD, "--prefix", "soak",
    ]  # fmt: skip
    with log.open("wb") as output:
        return subprocess.Popen(command, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT)


# --- samples ----------------------------------------------------------------------------------


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    assert match, "no VmRSS in /proc: the soak reads a Linux process"
    return int(match.group(1)) / 1024


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def task_count(client: httpx.AsyncClient) -> int:
    text = (await client.get("/-/metrics")).text
    match = re.search(r'^gateway_asyncio_tasks\{protocol="process"\} (\d+)', text, re.MULTILINE)
    assert match, "/-/metrics has no gateway_asyncio_tasks"
    return int(match.group(1))


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile, in ms; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def sample(
    gateway: Gateway, load: Load, client: httpx.AsyncClient, t: float
) -> dict[str, float]:
    pid = gateway.proc.pid
    row: dict[str, float] = {"elapsed_s": round(t, 1), "rss_mib": round(rss_mib(pid), 2)}
    row |= {"fds": open_fds(pid), "tasks": await task_count(client)}
    row |= {"errors": load.tally.errors, "delivered": load.tally.delivered}
    latencies = load.tally.take()
    for protocol in PROTOCOLS:
        values = latencies.get(protocol, [])
        row[f"{protocol}_p50_ms"] = round(percentile(values, 0.50), 2)
        row[f"{protocol}_p99_ms"] = round(percentile(values, 0.99), 2)
        row[f"{protocol}_n_ms"] = len(values)
    return row


async def soak(
    options: Options, gateway: Gateway, csv_path: Path, log: Path
) -> list[dict[str, float]]:
    """Run the load for `options.minutes`, a row every `options.interval` s (also in the CSV)."""
    devices = start_devices(options, gateway.ports.mqtt, log)
    load = Load(gateway.ports, options.rates)
    rows: list[dict[str, float]] = []
    base = f"http://127.0.0.1:{gateway.ports.http}"
    try:
        await load.start()
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            rows = await _sample_loop(options, gateway, load, client, csv_path, devices)
    finally:
        await load.stop()
        stop(devices)
    return rows


async def _sample_loop(
    options: Options, gateway: Gateway, load: Load, client: httpx.AsyncClient,
    csv_path: Path, devices: subprocess.Popen[bytes],
) -> list[dict[str, float]]:  # fmt: skip
    rows: list[dict[str, float]] = []
    started = time.monotonic()
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, COLUMNS)
        writer.writeheader()
        for n in range(1, int(options.minutes * 60 / options.interval) + 1):
            await asyncio.sleep(max(0.0, started + n * options.interval - time.monotonic()))
            for name, proc in (("gateway", gateway.proc), ("gateway simulate", devices)):
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}")
            rows.append(await sample(gateway, load, client, time.monotonic() - started))
            writer.writerow(rows[-1])
            handle.flush()
    return rows


# --- the run ----------------------------------------------------------------------------------


def run(options: Options, out: Path) -> tuple[list[dict[str, float]], list[str]]:
    """Soak the demo; writes `out`.csv and `out`.png; returns the rows and the verdict."""
    out.parent.mkdir(parents=True, exist_ok=True)
    csv_path, png = out.with_suffix(".csv"), out.with_suffix(".png")
    logs = Path(tempfile.gettempdir())  # the processes' output: kept there, not with the results
    gateway_log, devices_log = logs / f"{out.name}.gateway.log", logs / f"{out.name}.devices.log"
    with running_gateway(options.devices, gateway_log) as gateway:
        rows = asyncio.run(soak(options, gateway, csv_path, devices_log))
    readings = options.mqtt_rate * options.interval
    checks = verdict(rows, options.warmup, options.max_drift, options.max_latency_drift, readings)
    title = (
        f"soak: {options.devices} devices, {options.mqtt_rate:g} readings/s, "
        f"{options.rates.dashboards} dashboards, {options.minutes:g} min"
    )
    plot(rows, options.warmup, title, png)
    return rows, checks


def main(argv: Sequence[str] | None = None) -> int:
    options, out = parse(argv)
    # Stopped with SIGTERM (kill, a CI timeout): unwind, so the gateway and devices stop too.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    _, checks = run(options, out)
    print("\n".join(checks))
    return 0 if all(line.startswith("ok") for line in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
