"""Intakes under a flood: each intake flooded in turn while the others are timed, with the
intakes' caps at their defaults (capped) and lifted (open), in one run.

Run from the project root:  .venv/bin/python benchmarks/intake_flood.py [--rounds 3]

Two `gateway run` processes (intake_flood_settings.py, one SQLite file, Django's default
password hasher) serve every intake: the embedded MQTT broker, the Twilio SMS webhook and the
Mailgun inbound-mail webhook (both storing to the database), SMTP, and ``/ping/``, a Django
view reading the database. ``capped`` runs the defaults; ``open`` lifts ``INTAKE``,
``MAX_CONNECTIONS``, ``LOGINS`` and the mail webhook's ``MAX_IN_FLIGHT``. Rounds interleave
the two processes. In each round, for each flooded intake: once both gateways are quiet (under
5 % of a core for 0.5 s, so no flood's leftover work, such as logins still hashing, is timed
as idle), every other intake is timed alone (``--idle`` exchanges each, one at a time: a
valid device's CONNACK, a signed webhook answered, a mail sent connect to QUIT, a GET); then
``--flooders`` clients flood the intake for ``--seconds`` (new connections, new messages;
wrong passwords from a loopback address of their own for MQTT) while the others are timed
again, one exchange at a time. The table gives, per flooded intake and mode, the median of
each other intake under the flood over its idle median (all rounds), the worst such ratio,
and the flood's answers (ok; busy: 503, 421, CONNACK 3; refused: CONNACK 5; error).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.intake_clients import (  # noqa: E402
    Exchange,
    Intakes,
    http_get,
    mail_webhook,
    mqtt_login,
    sms_webhook,
    smtp_mail,
)
from benchmarks.net import free_port, run_loop, start_gateway, wait_port  # noqa: E402

SETTINGS = "benchmarks.intake_flood_settings"
PASSWORD = "the-valid-device-password"
MODES = ("capped", "open")
Client = Callable[[Intakes], Awaitable[Exchange]]
PROBES: dict[str, Client] = {
    "mqtt": lambda at: mqtt_login(at.mqtt, "valid-1", PASSWORD),
    "sms": lambda at: sms_webhook(at.http),
    "mail": lambda at: mail_webhook(at.http),
    "smtp": lambda at: smtp_mail(at.smtp),
    "http": lambda at: http_get(at.http),
}


def flood_client(name: str, round_number: int) -> Client:
    if name != "mqtt":
        return PROBES[name]
    host = f"127.0.0.{2 + round_number}"  # a fresh address: its failures start from zero
    return lambda at: mqtt_login(at.mqtt, "valid-1", "a guess", host)


async def timed(names: list[str], at: Intakes, until: asyncio.Task[Any] | None, count: int
                ) -> dict[str, list[float]]:  # fmt: skip
    """Each of `names` in turn, `count` times, or until `until` is done; a failed exchange
    is listed under ``"<name> failed"`` (and printed)."""
    times: dict[str, list[float]] = defaultdict(list)
    rounds = 0
    while (until is None and rounds < count) or (until is not None and not until.done()):
        for name in names:
            exchange = await PROBES[name](at)
            if exchange.outcome != "ok":
                print(f"  {name} failed: {exchange}", file=sys.stderr)
                times[f"{name} failed"].append(exchange.seconds)
                continue
            times[name].append(exchange.seconds)
        rounds += 1
    return times


async def flood(client: Client, at: Intakes, flooders: int, seconds: float) -> Counter[str]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    answers: Counter[str] = Counter()

    async def worker() -> None:
        while loop.time() < deadline:
            answers[(await client(at)).outcome] += 1

    await asyncio.gather(*(worker() for _ in range(flooders)))
    return answers


def cpu_seconds(pid: int) -> float:
    """The process's CPU time so far (user and system, every thread)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def quiet(pids: list[int], window: float = 0.5, share: float = 0.05) -> None:
    """Until every gateway used under `share` of a core for `window` seconds: a flood's
    leftovers (logins still hashing after their clients left) are not timed as idle."""
    for _ in range(240):
        before = [cpu_seconds(pid) for pid in pids]
        await asyncio.sleep(window)
        used = [cpu_seconds(pid) - start for pid, start in zip(pids, before, strict=True)]
        if max(used) < share * window:
            return


async def one_round(at: Intakes, number: int, args: argparse.Namespace, pids: list[int]
                    ) -> list[dict[str, Any]]:  # fmt: skip
    rows = []
    for flooded in args.flood:
        await quiet(pids)
        others = [name for name in PROBES if name != flooded]
        idle = await timed(others, at, None, args.idle)
        flooding = asyncio.create_task(
            flood(flood_client(flooded, number), at, args.flooders, args.seconds)
        )
        await asyncio.sleep(0.3)
        under = await timed(others, at, flooding, 0)
        answers = await flooding
        rows.append({"flooded": flooded, "idle": idle, "flood": under, "answers": answers})
        print(f"  {flooded} flooded: {dict(answers)}", file=sys.stderr)
    return rows


def prepare_database(path: str) -> None:
    os.environ.update(DJANGO_SETTINGS_MODULE=SETTINGS, INTAKE_FLOOD_DB=path)
    import django

    django.setup()
    from django.core.management import call_command

    from django_app.models.devices import Device, DeviceCredential

    call_command("migrate", verbosity=0)
    credential = DeviceCredential(device=Device.objects.create(device_id="valid-1"))
    credential.set_password(PASSWORD)
    credential.save()


def start(mode: str, database: str) -> tuple[Any, Intakes]:
    mqtt, smtp = free_port(), free_port()
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": SETTINGS, "PYTHONPATH": str(ROOT),
           "INTAKE_FLOOD_MODE": mode, "INTAKE_FLOOD_DB": database,
           "INTAKE_FLOOD_MQTT_PORT": str(mqtt), "INTAKE_FLOOD_SMTP_PORT": str(smtp)}  # fmt: skip
    proc, http = start_gateway("benchmarks.intake_flood_app:application", env, ROOT)
    wait_port(mqtt)
    wait_port(smtp)
    return proc, Intakes(http, mqtt, smtp)


def report(results: dict[str, list[dict[str, Any]]]) -> None:
    print("| flooded | mode | " + " | ".join(f"{n} (x idle)" for n in PROBES) +
          " | worst | flood's answers |")  # fmt: skip
    print("|---|---|" + "---|" * (len(PROBES) + 2))
    for flooded in {row["flooded"]: None for rows in results.values() for row in rows}:
        for mode in results:
            rows = [row for row in results[mode] if row["flooded"] == flooded]
            cells, ratios = [], []
            for name in PROBES:
                if name == flooded:
                    cells.append("—")
                    continue
                idle = statistics.median(t for row in rows for t in row["idle"][name])
                under = statistics.median(t for row in rows for t in row["flood"][name])
                ratios.append(under / idle)
                cells.append(f"{under / idle:.2f} ({idle * 1000:.1f} → {under * 1000:.1f} ms)")
            answers: Counter[str] = sum((row["answers"] for row in rows), Counter())
            failed = sum(len(t) for row in rows for key, t in row["flood"].items() if "fail" in key)
            if failed:
                answers["others failed"] = failed
            print(f"| {flooded} | {mode} | " + " | ".join(cells) +
                  f" | {max(ratios):.2f} | {dict(sorted(answers.items()))} |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--idle", type=int, default=5, help="idle exchanges per intake")
    parser.add_argument("--flooders", type=int, default=150)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument(
        "--flood",
        type=lambda v: v.split(","),
        default=list(PROBES),
        help="intakes to flood, e.g. mail,http (default: each in turn)",
    )
    parser.add_argument("--modes", type=lambda v: v.split(","), default=list(MODES))
    args = parser.parse_args()
    results: dict[str, list[dict[str, Any]]] = {mode: [] for mode in args.modes}
    with tempfile.TemporaryDirectory() as folder:
        database = str(Path(folder) / "intake_flood.sqlite3")
        prepare_database(database)
        running = {mode: start(mode, database) for mode in args.modes}
        pids = [proc.pid for proc, _ in running.values()]
        try:
            for _, at in running.values():
                run_loop(timed(list(PROBES), at, None, 2))  # warm-up: imports, first requests
            for number in range(args.rounds):
                for mode, (_, at) in running.items():
                    results[mode] += run_loop(one_round(at, number, args, pids))
                    print(f"round {number + 1} {mode} done", file=sys.stderr)
        finally:
            for proc, _ in running.values():
                proc.terminate()
                proc.wait(30)
    report(results)


if __name__ == "__main__":
    main()
