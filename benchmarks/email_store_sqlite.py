"""The InboundEmail store's hand-kept SQLite path against the Django ORM, on the same work.

Run from the repository root: ``.venv/bin/python benchmarks/email_store_sqlite.py``. It makes
a temporary SQLite file (WAL, ``synchronous=NORMAL``, persistent connections: the settings of
benchmarks/smtp_intake.py), applies the project's migrations, fills in `--prefill` stored
messages, then measures the store's work for `--messages` distinct 10 KB messages per run,
batch after batch: every message of a batch looked up by 4 concurrent tasks (4 SMTP sessions;
every lookup a miss, as for new mail), then the batch written in one transaction from a worker
thread, as the store's writer does. Per message: lookup time, write time, their sum, and CPU
time of the process (all threads). Contenders, interleaved over rounds (the order rotating):

- store: `django_app.inbound_mail.DatabaseMailStore` as it is: its `lookup`, answered on the
  event loop by the store's own query-only `sqlite3` connection (`SQLiteReader`); its `write`
  (`inbound_mail_db`: one ``INSERT ... ON CONFLICT DO UPDATE`` in plain SQL, `executemany` on
  Django's connection, in a transaction) in `database_sync_to_async`.
- store-thread: the store without its `sqlite3` connection: lookups through its thread path
  (`_lookup_loop`, its plain-SQL `select` in `database_sync_to_async`, lookups arriving
  meanwhile answered by one query), as on any other database; the batch as store. It tells
  what the inline connection buys apart from plain SQL.
- orm: the same store with the library path in place of the hand-kept code: a lookup goes
  through the store's thread path (`_lookup_loop`: lookups arriving meanwhile answered by one
  query) with ``InboundEmail.objects.filter(raw_sha256__in=...).order_by().values_list(...)``;
  the batch through ``bulk_create(update_conflicts=True, ...)`` in ``transaction.atomic()``,
  in `database_sync_to_async`.
- orm-afirst: lookups as Django's async ORM makes them, one
  ``filter(<the unique key>).values_list(...).afirst()`` per message; the batch as orm.

After each run its rows are deleted again (not timed), so every run sees the same table.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

logger = logging.getLogger("gateway.benchmarks")

SIZE = 10 * 1024
SESSIONS = 4
RECIPIENT = "support@example.com"
CONTENDERS = ("store", "store-thread", "orm", "orm-afirst")
KEY_FIELDS = ("raw_sha256", "message_id", "recipient")
OUTCOME_FIELDS = ["status", "attempts", "error", "handled_at"]


def setup_django(database: Path) -> None:
    """benchmarks/settings.py with a SQLite file as smtp_intake.py sets it up; migrated."""
    import django
    from django.conf import settings
    from django.core.management import call_command

    from benchmarks import settings as base

    values = {name: getattr(base, name) for name in dir(base) if name.isupper()}
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
    call_command("migrate", verbosity=0)


# --- the messages ------------------------------------------------------------------------------


@dataclass
class Message:
    """What the intake hands the store: the scope, the raw bytes and their SHA-256."""

    scope: Any
    raw: bytes
    digest: str


def make_messages(tag: str, count: int) -> list[Message]:
    line = ("The printer on the third floor is on fire again. " * 2)[:98] + "\r\n"
    body = (line * (SIZE // len(line) + 1))[:SIZE].encode()
    messages = []
    for index in range(count):
        message_id = f"<{tag}.{index}@customer.test>"
        head = (
            f"From: sender{index % SESSIONS}@customer.test\r\nTo: {RECIPIENT}\r\n"
            f"Subject: Ticket {tag}-{index}\r\nMessage-ID: {message_id}\r\n\r\n"
        )
        raw = head.encode() + body
        scope = {
            "type": "email",
            "source": "smtp",
            "adapter": "bench",
            "sender": f"sender{index % SESSIONS}@customer.test",
            "recipient": RECIPIENT,
            "mailbox": None,
            "uid": None,
            "message_id": message_id,
        }
        messages.append(Message(scope, raw, hashlib.sha256(raw).hexdigest()))
    return messages


def records(messages: list[Message]) -> list[Any]:
    """The store's records of handled messages (what `DatabaseMailStore.record` queues)."""
    from django_app.inbound_mail_db import MailRecord, store_key

    now = datetime.now(UTC)
    return [
        MailRecord(
            store_key(m.scope, m.digest), m.scope, m.raw, "Ticket", "handled", 1, "", now, now
        )
        for m in messages
    ]


# --- the library path --------------------------------------------------------------------------


def orm_select(keys: list[Any]) -> dict[Any, Any]:
    """The store's `select` through the ORM."""
    from django_app.inbound_mail_db import MailKey
    from django_app.models import InboundEmail
    from gateway.email_store import Known

    digests = {key.raw_sha256 for key in keys}
    rows = (
        InboundEmail.objects.filter(raw_sha256__in=digests)
        .order_by()  # the model's ordering (-received_at) would only add a sort
        .values_list("message_id", "raw_sha256", "recipient", "status", "attempts")
    )
    return {MailKey(*row[:3]): Known(row[3], row[4]) for row in rows}


def orm_write(batch: list[Any]) -> None:
    """The store's `write` through the ORM: one bulk upsert in a transaction."""
    from django.db import transaction

    from django_app.inbound_mail_db import _columns, _outcome
    from django_app.models import InboundEmail

    latest = {item.key: item for item in batch}  # several outcomes of one key: the last wins
    rows = [
        InboundEmail(**key._asdict(), **_outcome(latest[key]), **_columns(latest[key]))
        for key in sorted(latest)
    ]
    with transaction.atomic():
        InboundEmail.objects.bulk_create(
            rows, update_conflicts=True, unique_fields=KEY_FIELDS, update_fields=OUTCOME_FIELDS
        )


class OrmLookups:
    """The store's thread path for lookups (`_lookup_loop`), with the ORM query."""

    def __init__(self) -> None:
        from gateway.db import database_sync_to_async

        self.select = database_sync_to_async(orm_select, thread_sensitive=False)
        self.waiting: list[tuple[Any, asyncio.Future[Any]]] = []
        self.reader: asyncio.Task[None] | None = None

    async def lookup(self, scope: Any, digest: str) -> Any:
        from django_app.inbound_mail_db import store_key

        waiter = asyncio.get_running_loop().create_future()
        self.waiting.append((store_key(scope, digest), waiter))
        if self.reader is None or self.reader.done():
            self.reader = asyncio.create_task(self.run())
        return await waiter

    async def run(self) -> None:
        while self.waiting:
            batch, self.waiting = self.waiting, []
            found = await self.select([key for key, _ in batch])
            for key, waiter in batch:
                waiter.set_result(found.get(key))


async def afirst_lookup(scope: Any, digest: str) -> Any:
    """One lookup as Django's async ORM makes it."""
    from django_app.inbound_mail_db import store_key
    from django_app.models import InboundEmail
    from gateway.email_store import Known

    key = store_key(scope, digest)
    found = await (
        InboundEmail.objects.filter(**key._asdict()).values_list("status", "attempts").afirst()
    )
    return None if found is None else Known(*found)


# --- measuring ---------------------------------------------------------------------------------


@dataclass
class Run:
    """Seconds per message: looking up, writing, and CPU (all threads)."""

    lookup: float
    write: float
    cpu: float

    @property
    def total(self) -> float:
        return self.lookup + self.write


Lookup = Callable[[Any, str], Awaitable[Any]]
Write = Callable[[list[Any]], Awaitable[None]]


def contender(name: str, store: Any) -> tuple[Lookup, Write]:
    from django_app.inbound_mail_db import write as store_write
    from gateway.db import database_sync_to_async

    # The store's writer: a worker thread of its own (a file database: not thread-sensitive).
    write = database_sync_to_async(store_write, thread_sensitive=False)
    orm = database_sync_to_async(orm_write, thread_sensitive=False)
    if name == "store":
        return store.lookup, write
    if name == "store-thread":
        # The store's own fallback, which every other database takes: no inline reader.
        threaded = type(store)()
        threaded._inline_checked = True
        return threaded.lookup, write
    if name == "orm":
        return OrmLookups().lookup, orm
    return afirst_lookup, orm


async def run_once(lookup: Lookup, write: Write, messages: list[Message], batch: int) -> Run:
    looking = writing = 0.0
    gc.collect()
    cpu = time.process_time()
    for start in range(0, len(messages), batch):
        chunk = messages[start : start + batch]

        async def session(first: int, chunk: list[Message] = chunk) -> None:
            for message in chunk[first::SESSIONS]:
                if await lookup(message.scope, message.digest) is not None:
                    raise RuntimeError("a new message was found stored: not the workload meant")

        began = time.perf_counter()
        await asyncio.gather(*(session(first) for first in range(SESSIONS)))
        looked = time.perf_counter()
        await write(records(chunk))
        writing += time.perf_counter() - looked
        looking += looked - began
    count = len(messages)
    return Run(looking / count, writing / count, (time.process_time() - cpu) / count)


def delete_rows(messages: list[Message]) -> int:
    """Delete a run's rows again (checking they were all written); how many there were."""
    from django_app.models import InboundEmail

    digests = [message.digest for message in messages]
    stored = InboundEmail.objects.filter(raw_sha256__in=digests)
    count = stored.count()
    stored.delete()
    return count


async def measure(rounds: int, count: int, batches: list[int]) -> dict[tuple[int, str], list[Run]]:
    from django_app.inbound_mail import DatabaseMailStore
    from gateway.db import database_sync_to_async

    store = DatabaseMailStore()
    clean = database_sync_to_async(delete_rows, thread_sensitive=False)
    results: dict[tuple[int, str], list[Run]] = {}
    for number in range(rounds + 1):  # round 0 warms up: connections, the inline reader
        turn = number % len(CONTENDERS)
        order = CONTENDERS[turn:] + CONTENDERS[:turn]
        for batch in batches:
            for name in order:
                messages = make_messages(f"r{number}-{batch}-{name}-{time.time_ns()}", count)
                lookup, write = contender(name, store)
                run = await run_once(lookup, write, messages, batch)
                if await clean(messages) != count:
                    raise RuntimeError(f"{name} did not store every message")
                if number:
                    results.setdefault((batch, name), []).append(run)
        logger.info("round %d/%d done", number, rounds)
    await store.aclose()
    return results


def prefill(count: int) -> None:
    """Stored messages from before, so that lookups search a table that is not empty."""
    from django_app.inbound_mail_db import write

    messages = make_messages(f"prefill-{time.time_ns()}", count)
    for start in range(0, count, 500):
        write(records(messages[start : start + 500]))


def report(results: dict[tuple[int, str], list[Run]], rounds: int, count: int) -> None:
    logger.info("")
    logger.info("%d messages of 10 KB per run, median of %d interleaved rounds", count, rounds)
    logger.info("µs per message; the ratios are path / store (range of the per-round ratios)")
    logger.info(
        "%-6s %-12s %9s %9s %9s %9s %9s %9s %20s",
        "batch", "path", "lookup", "write", "total", "CPU", "lookup x", "write x", "total x",
    )  # fmt: skip
    for batch, name in sorted(results, key=lambda key: (key[0], CONTENDERS.index(key[1]))):
        runs, store = results[(batch, name)], results[(batch, "store")]
        lookup, write, total, cpu = (
            statistics.median(getattr(run, part) for run in runs)
            for part in ("lookup", "write", "total", "cpu")
        )
        ratios = [run.total / ours.total for run, ours in zip(runs, store, strict=True)]
        logger.info(
            "%-6d %-12s %9.1f %9.1f %9.1f %9.1f %8.2fx %8.2fx %7.2fx (%.2f-%.2f)",
            batch,
            name,
            lookup * 1e6,
            write * 1e6,
            total * 1e6,
            cpu * 1e6,
            lookup / statistics.median(run.lookup for run in store),
            write / statistics.median(run.write for run in store),
            total / statistics.median(run.total for run in store),
            min(ratios),
            max(ratios),
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--messages", type=int, default=2000, help="per run")
    parser.add_argument("--batch", type=int, nargs="+", default=[20, 200])
    parser.add_argument("--prefill", type=int, default=10_000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with tempfile.TemporaryDirectory(prefix="gateway-email-store-") as directory:
        setup_django(Path(directory) / "bench.sqlite3")
        prefill(args.prefill)
        import uvloop

        results = uvloop.run(measure(args.rounds, args.messages, args.batch))
    report(results, args.rounds, args.messages)


if __name__ == "__main__":
    main()
