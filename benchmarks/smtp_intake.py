"""SMTP intake: messages/s for 10 KB messages, our SMTP adapter vs a bare aiosmtpd handler.

Run from the project root:  .venv/bin/python benchmarks/smtp_intake.py [--messages 400]

Servers, all in this process, on one event loop (uvloop when installed, as the gateway runs),
each created with ``loop.create_server`` on a free port, measured one after another in
alternating rounds:
- bare:          aiosmtpd's SMTP with a handler whose handle_DATA only counts and answers 250;
- gateway:       protocol_adapters.smtp.SMTPAdapter: RCPT checked against an EmailToRouter,
                 every message stored in InboundEmail (SQLite file, dedup) and run through an
                 AsyncEmailConsumer that counts; 250 after the consumer returned;
- gateway-nostore: the same with STORE=False (no database), to show what storage costs.
Load: 4 sender processes (smtplib, one persistent connection each) send `--messages` distinct
10 KB messages each, to one recipient, as fast as the server answers. A round's rate is all
messages divided by the time from "go" until the last sender finished.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import smtplib
import statistics
import sys
import tempfile
import time
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SENDERS = 4
SIZE = 10 * 1024
RECIPIENT = "support@example.com"


# --- the sender processes ----------------------------------------------------------------------


def build_messages(client: int, count: int, round_id: str) -> list[bytes]:
    line = ("The printer on the third floor is on fire again. " * 2)[:98] + "\n"
    body = line * (SIZE // len(line))
    messages = []
    for index in range(count):
        mail = EmailMessage()
        mail["From"] = f"sender{client}@customer.test"
        mail["To"] = RECIPIENT
        mail["Subject"] = f"Ticket {client}-{index}"
        mail["Message-ID"] = f"<{round_id}.{client}.{index}@customer.test>"
        mail.set_content(body)
        messages.append(mail.as_bytes(policy=SMTP_POLICY))
    return messages


def client_main(port: int, client: int, count: int, round_id: str) -> None:
    messages = build_messages(client, count, round_id)
    with smtplib.SMTP("127.0.0.1", port, timeout=120) as smtp:
        smtp.ehlo("bench.test")
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        sys.stdin.readline()  # "go"
        start = time.perf_counter()
        for raw in messages:
            smtp.sendmail(f"sender{client}@customer.test", [RECIPIENT], raw)
        elapsed = time.perf_counter() - start
    sys.stdout.write(f"{elapsed}\n")


async def run_round(port: int, count: int, round_id: str) -> float:
    """Start the senders, wait until all are connected, say go; return messages/s."""
    procs = [
        await asyncio.create_subprocess_exec(
            *(sys.executable, __file__, "--client", str(port), str(n), str(count), round_id),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=ROOT,
        )
        for n in range(SENDERS)
    ]
    for proc in procs:
        assert proc.stdout is not None
        assert (await proc.stdout.readline()).strip() == b"ready"
    start = time.perf_counter()
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        await proc.stdin.drain()
    for proc in procs:
        await proc.communicate()
        assert proc.returncode == 0, f"a sender failed ({proc.returncode})"
    return SENDERS * count / (time.perf_counter() - start)


# --- the servers -------------------------------------------------------------------------------


class CountingHandler:
    """The bare handler: counts and answers 250."""

    def __init__(self) -> None:
        self.count = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.count += 1
        return "250 OK"


async def start_bare() -> tuple[Any, CountingHandler, int]:
    from aiosmtpd.smtp import SMTP

    handler = CountingHandler()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="mx.bench", enable_SMTPUTF8=True, loop=loop),
        "127.0.0.1",
        0,
    )
    return server, handler, server.sockets[0].getsockname()[1]


def gateway_app(counter: list[int]) -> Any:
    from gateway.consumers.email import AsyncEmailConsumer
    from routers import EmailToRouter, ProtocolTypeRouter, address

    class Counting(AsyncEmailConsumer):
        async def receive(self, message: Any) -> None:
            counter[0] += 1

    return ProtocolTypeRouter(
        {"email": EmailToRouter([address(r"support@example\.com", Counting.as_asgi())])}
    )


async def start_gateway(store: bool, counter: list[int]) -> tuple[Any, int]:
    from gateway.adapters import AdapterContext
    from gateway.metrics import registry
    from gateway.pipeline import log_dead_letter
    from protocol_adapters.smtp import SMTPAdapter

    context = AdapterContext(
        app=gateway_app(counter),
        name="bench",
        options={"PORT": 0, "HOSTNAME": "mx.bench", "STORE": store},
        metrics=registry,
        dead_letter=log_dead_letter,
    )
    adapter = SMTPAdapter(context)
    [listener] = await adapter.start()
    return adapter, int(listener.address.rsplit(":", 1)[1])


def setup_django(database: Path) -> None:
    import django
    from django.conf import settings
    from django.core.management import call_command

    from benchmarks import settings as base

    values = {name: getattr(base, name) for name in dir(base) if name.isupper()}
    # SQLite as a long-running process should use it: WAL (readers never wait for the
    # writer's commit) and persistent connections.
    values["DATABASES"] = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(database),
            "CONN_MAX_AGE": None,
            "OPTIONS": {"init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"},
        }
    }
    settings.configure(**values)
    django.setup()
    call_command("migrate", run_syncdb=True, verbosity=0)


async def measure(rounds: int, count: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {"bare": [], "gateway": [], "gateway-nostore": []}
    for number in range(rounds):
        for name in results:
            round_id = f"r{number}-{name}-{time.time_ns()}"
            if name == "bare":
                server, handler, port = await start_bare()
                rate = await run_round(port, count, round_id)
                server.close()
                assert handler.count == SENDERS * count
            else:
                counter = [0]
                adapter, port = await start_gateway(name == "gateway", counter)
                rate = await run_round(port, count, round_id)
                await adapter.stop(10)
                assert counter[0] == SENDERS * count, counter
            results[name].append(rate)
            sys.stderr.write(f"round {number + 1} {name:<16} {rate:8.0f} msgs/s\n")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=400, help="messages per sender")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        setup_django(Path(tmp) / "bench.sqlite3")
        try:
            import uvloop

            runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
        except ImportError:
            runner = asyncio.Runner()
        with runner:
            results = runner.run(measure(args.rounds, args.messages))
    bare = statistics.median(results["bare"])
    lines = [f"{SENDERS} senders x {args.messages} messages of 10 KB, median of {args.rounds}:"]
    for name, rates in results.items():
        median = statistics.median(rates)
        lines.append(f"  {name:<16} {median:8.0f} msgs/s   {median / bare:5.2f}x bare")
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        port, client, count, round_id = sys.argv[2:6]
        client_main(int(port), int(client), int(count), round_id)
    else:
        os.environ.setdefault("PYTHONHASHSEED", "0")
        sys.path.insert(0, str(ROOT))
        main()
