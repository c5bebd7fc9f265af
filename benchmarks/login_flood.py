"""Logins under a flood: a valid device's CONNACK and an SMS webhook, idle and during 40
concurrent wrong-password CONNECTs, before and after the hashing pool, in one run.

Run from the project root:  .venv/bin/python benchmarks/login_flood.py [--rounds 5]

One SQLite file holds the valid device (Django's default password hasher). For each mode a
`gateway run` subprocess serves the embedded broker and the Twilio webhook (messages kept in
the database, as by default):
- before: each password checked on the database thread, credential read and hash in one call
  (the login path before the hashing pool), with no login gate;
- after:  the default: the credential read on the database thread, the hash on the hashing
          pool, ``LOGINS`` at its defaults.
Each round times the valid device's CONNACK and one signed webhook POST alone (idle), then
sends 40 CONNECTs with wrong passwords from another loopback address (a new one each round),
and 0.2 s later times the same two while the flood is being checked. Medians over the rounds;
the CONNACK codes are listed (0 accepted, 3 server unavailable, 5 not authorized, -1 closed
without a CONNACK: the login waited past ``CONNECT_TIMEOUT``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import webhook_load as harness  # noqa: E402
from benchmarks.net import free_port, run_loop, start_gateway, wait_port  # noqa: E402
from benchmarks.sms_webhook import signed_request  # noqa: E402

SETTINGS = "benchmarks.login_flood_settings"
PASSWORD = "the-valid-device-password"
FLOOD = 40
MODES = ("before", "after")


def _text(value: str) -> bytes:
    data = value.encode()
    return len(data).to_bytes(2, "big") + data


def connect_packet(client_id: str, username: str, password: str) -> bytes:
    """An MQTT 3.1.1 CONNECT with a username and password, clean session."""
    body = _text("MQTT") + bytes([4, 0xC2]) + (60).to_bytes(2, "big")
    body += _text(client_id) + _text(username) + _text(password)
    return bytes([0x10, len(body)]) + body


async def connack(port: int, client_id: str, username: str, password: str,
                  local_host: str | None = None) -> tuple[float, int]:  # fmt: skip
    """Seconds from connecting to the CONNACK, and its return code (-1: closed without one,
    the login still unchecked after ``CONNECT_TIMEOUT``)."""
    started = time.perf_counter()
    local = (local_host, 0) if local_host is not None else None
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=local)
    writer.write(connect_packet(client_id, username, password))
    try:
        code = (await reader.readexactly(4))[3]
    except (asyncio.IncompleteReadError, ConnectionError):
        code = -1
    elapsed = time.perf_counter() - started
    writer.close()
    return elapsed, code


async def webhook(port: int, n: int) -> float:
    """Seconds for one signed Twilio POST to be answered 200."""
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(signed_request(port, n))
    head = await reader.readuntil(b"\r\n\r\n")
    await harness.read_body(reader, head)
    elapsed = time.perf_counter() - started
    writer.close()
    assert head.startswith(b"HTTP/1.1 200"), head
    return elapsed


async def one_round(mqtt: int, http: int, number: int) -> dict[str, Any]:
    valid = ("valid-1", "valid-1", PASSWORD)
    idle_connack, code = await connack(mqtt, *valid)
    assert code == 0, f"the valid device was refused: {code}"
    idle_sms = await webhook(http, number * 10)
    host = f"127.0.0.{2 + number}"
    guesses = [(f"flood-{i}", "valid-1" if i % 2 else f"nobody-{i}") for i in range(FLOOD)]
    flood = [asyncio.create_task(connack(mqtt, *guess, "a-guess", host)) for guess in guesses]
    await asyncio.sleep(0.2)
    (flood_connack, code), flood_sms = await asyncio.gather(
        connack(mqtt, *valid), webhook(http, number * 10 + 1)
    )
    codes = sorted({answer for _, answer in await asyncio.gather(*flood)})
    return {"connack idle": idle_connack, "connack flood": flood_connack,
            "sms idle": idle_sms, "sms flood": flood_sms, "codes": codes,
            "valid": code}  # fmt: skip


def prepare_database(path: str) -> None:
    os.environ.update(DJANGO_SETTINGS_MODULE=SETTINGS, LOGIN_FLOOD_DB=path)
    import django

    django.setup()
    from django.core.management import call_command

    from django_app.models.devices import Device, DeviceCredential

    call_command("migrate", verbosity=0)
    credential = DeviceCredential(device=Device.objects.create(device_id="valid-1"))
    credential.set_password(PASSWORD)
    credential.save()


def measure(mode: str, rounds: int, database: str) -> list[dict[str, Any]]:
    mqtt = free_port()
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": SETTINGS, "PYTHONPATH": str(ROOT),
           "LOGIN_FLOOD_MODE": mode, "LOGIN_FLOOD_DB": database,
           "LOGIN_FLOOD_MQTT_PORT": str(mqtt)}  # fmt: skip
    proc, http = start_gateway("benchmarks.login_flood:application", env, ROOT)
    try:
        wait_port(mqtt)
        run_loop(webhook(http, 10**6))  # warm-up: imports, the first request
        return [run_loop(one_round(mqtt, http, n)) for n in range(rounds)]
    finally:
        proc.terminate()
        proc.wait(30)


def _application() -> Any:
    from gateway import AsyncSmsConsumer

    class Echo(AsyncSmsConsumer):
        async def receive(self, body: str) -> None:
            await self.reply(f"echo: {body}")

    return harness.sms_gateway_app(Echo.as_asgi())


application = harness.lazy_app(_application)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        database = str(Path(folder) / "login_flood.sqlite3")
        prepare_database(database)
        results = {mode: measure(mode, args.rounds, database) for mode in MODES}
    keys = ("connack idle", "connack flood", "sms idle", "sms flood")
    print("| mode | " + " | ".join(keys) + " | valid CONNACK codes | flood's codes |")
    print("|---|" + "---|" * (len(keys) + 2))
    for mode, rows in results.items():
        medians = [f"{statistics.median(row[key] for row in rows):.3f} s" for key in keys]
        valid = [row["valid"] for row in rows]
        codes = sorted({code for row in rows for code in row["codes"]})
        print(f"| {mode} | " + " | ".join(medians) + f" | {valid} | {codes} |")


if __name__ == "__main__":
    main()
