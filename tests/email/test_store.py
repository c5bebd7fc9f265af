"""`DatabaseMailStore` lookups: batched through a thread, inline on a SQLite file, after a restart.

And how the ``STORE`` / ``CHECKPOINT_STORE`` options load a store, or name what is wrong.
"""

from __future__ import annotations

import asyncio
import sqlite3
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from django_app.imap_checkpoints import DatabaseCheckpointStore
from django_app.inbound_mail import DatabaseMailStore
from django_app.inbound_mail_db import SQLiteReader, store_key
from gateway.consumers.email import AsyncEmailConsumer
from gateway.email_store import (
    Known,
    NoMailStore,
    checkpoint_store_problems,
    load_checkpoint_store,
    load_mail_store,
    mail_store_problems,
)
from gateway.exceptions import ImproperlyConfiguredGateway
from gateway.pipeline import KeyedDispatcher, RetryPolicy
from protocol_adapters.email_common import EmailIntake, raw_digest, scope_from_raw
from routers import EmailToRouter, ProtocolTypeRouter, address

RECIPIENT = "support@example.com"


def raw_message(number: int) -> bytes:
    return (
        f"From: alice@customer.test\r\nTo: {RECIPIENT}\r\nSubject: Ticket {number}\r\n"
        f"Message-ID: <t{number}@customer.test>\r\n\r\nbody {number}\r\n"
    ).encode()


def intake(calls: list[str]) -> EmailIntake:
    class Consumer(AsyncEmailConsumer):
        reply_limiter = None

        async def receive(self, message: EmailMessage) -> None:
            await asyncio.sleep(0)  # let the other deliveries interleave
            calls.append(self.subject)

    app = ProtocolTypeRouter({"email": EmailToRouter([address(RECIPIENT, Consumer.as_asgi())])})
    dispatcher = KeyedDispatcher("email", max_in_flight=50, retry=RetryPolicy(attempts=1))
    store = load_mail_store(None)
    return EmailIntake(app, adapter="t", source="smtp", dispatcher=dispatcher, store=store)


async def deliver_all(gate: EmailIntake, raws: list[bytes]) -> list[str]:
    deliveries = await asyncio.gather(
        *(gate.deliver(raw, sender="alice@customer.test", recipient=RECIPIENT) for raw in raws)
    )
    return [delivery.status for delivery in deliveries]


@pytest.mark.django_db(transaction=True)
async def test_concurrent_lookups_answer_each_message_for_itself() -> None:
    store = DatabaseMailStore()
    raws = [raw_message(n) for n in range(30)]
    scopes = [
        scope_from_raw(raw, source="smtp", adapter="t", sender="", recipient=RECIPIENT)
        for raw in raws
    ]
    for n in range(0, 30, 3):  # every third one handled, every third + 1 failed twice
        store.record(scopes[n], raw_digest(raws[n]), raws[n], "", "handled", 1)
        store.record(scopes[n + 1], raw_digest(raws[n + 1]), raws[n + 1], "", "failed", 2)
    assert await store.aclose()
    fresh = DatabaseMailStore()  # answers from the database only, many lookups per query
    answers = await asyncio.gather(
        *(fresh.lookup(scope, raw_digest(raw)) for scope, raw in zip(scopes, raws, strict=True))
    )
    expected = [Known("handled", 1), Known("failed", 2), None] * 10
    assert answers == expected


@pytest.mark.django_db(transaction=True)
async def test_concurrent_resends_after_a_restart_are_not_handled_again() -> None:
    raws = [raw_message(n) for n in range(20)]
    calls: list[str] = []
    first = intake(calls)
    assert await deliver_all(first, raws) == ["handled"] * 20
    await first.aclose(30)
    # A new intake and store, as after a restart: every resend is a duplicate, handled once.
    second = intake(calls)
    mixed = raws + [raw_message(n) for n in range(20, 25)]
    statuses = await deliver_all(second, mixed + raws[:5])
    await second.aclose(30)
    assert statuses == ["duplicate"] * 20 + ["handled"] * 5 + ["duplicate"] * 5
    assert sorted(calls) == sorted(f"Ticket {n}" for n in range(25))


@pytest.mark.django_db(transaction=True)
async def test_upsert_keeps_the_first_bytes_and_takes_the_last_outcome() -> None:
    from django_app.models import InboundEmail

    raw = raw_message(1)
    scope = scope_from_raw(raw, source="smtp", adapter="t", sender="", recipient=RECIPIENT)
    store = DatabaseMailStore()
    store.record(scope, raw_digest(raw), raw, "Ticket 1", "failed", 1, "boom")
    assert await store.flush()
    store.record(scope, raw_digest(raw), raw, "Ticket 1", "handled", 2)
    assert await store.aclose()
    row = await InboundEmail.objects.aget()
    assert (row.status, row.attempts, row.error, bytes(row.raw)) == ("handled", 2, "", raw)
    assert row.handled_at is not None


def inbound_email_table(path: Path) -> None:
    """Create the InboundEmail table in a SQLite file, with the test database's schema."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT sql FROM sqlite_master WHERE tbl_name = 'gateway_inboundemail' "
            "AND sql IS NOT NULL"
        )
        statements = [row[0] for row in cursor.fetchall()]
    assert statements
    with sqlite3.connect(path) as db:
        for statement in statements:
            db.execute(statement)


@pytest.mark.django_db
def test_inline_reader_sees_other_connections_commits_and_never_waits(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    inbound_email_table(path)
    raw = raw_message(1)
    scope = scope_from_raw(raw, source="smtp", adapter="t", sender="", recipient=RECIPIENT)
    key = store_key(scope, raw_digest(raw))
    reader = SQLiteReader(str(path))
    try:
        assert reader.get(key) is None
        # Another process writes the row: the reader's next lookup sees it.
        other = sqlite3.connect(path, isolation_level=None)
        other.execute(
            "INSERT INTO gateway_inboundemail (message_id, raw_sha256, recipient, raw, size, "
            "sender, subject, source, adapter, mailbox, status, attempts, error, received_at) "
            "VALUES (?, ?, ?, ?, 0, '', '', 'smtp', '', '', 'handled', 3, '', '2026-01-01')",
            (key.message_id, key.raw_sha256, key.recipient, raw),
        )
        assert reader.get(key) == Known("handled", 3)
        # While a writer holds the database exclusively, a lookup fails at once (the store
        # then asks through a worker thread) instead of blocking the event loop.
        other.execute("BEGIN EXCLUSIVE")
        with pytest.raises(sqlite3.OperationalError):
            reader.get(key)
        other.execute("ROLLBACK")
        assert reader.get(key) == Known("handled", 3)
        other.close()
    finally:
        reader.close()


def test_store_option_none_true_false_or_a_dotted_path() -> None:
    # None: the database, as the gateway's Django app is installed in the test settings.
    assert isinstance(load_mail_store(None), DatabaseMailStore)
    assert isinstance(load_mail_store(True), DatabaseMailStore)
    assert isinstance(load_mail_store(False), NoMailStore)
    assert isinstance(load_mail_store("gateway.email_store.NoMailStore"), NoMailStore)
    assert isinstance(load_checkpoint_store(None), DatabaseCheckpointStore)


def test_store_without_the_django_app_keeps_nothing(settings: Any) -> None:
    settings.INSTALLED_APPS = [app for app in settings.INSTALLED_APPS if app != "django_app"]
    assert isinstance(load_mail_store(None), NoMailStore)
    assert isinstance(load_mail_store(True), DatabaseMailStore)  # asked for: not second-guessed


def test_bad_store_options_name_the_setting() -> None:
    assert mail_store_problems(None) == mail_store_problems(False) == []
    assert mail_store_problems("gateway.email_store.NoMailStore") == []
    assert mail_store_problems(3) == [
        "STORE must be None, True, False or a dotted path to a class, got 3"
    ]
    [problem] = mail_store_problems("no.such.Store")
    assert problem.startswith("STORE: cannot import 'no.such.Store'")
    [problem] = checkpoint_store_problems(False, "OPTIONS['CHECKPOINT_STORE']")
    assert problem.startswith("OPTIONS['CHECKPOINT_STORE'] must be None or a dotted path")
    with pytest.raises(ImproperlyConfiguredGateway, match=r"^STORE: cannot import"):
        load_mail_store("no.such.Store")
    with pytest.raises(ImproperlyConfiguredGateway, match=r"^CHECKPOINT_STORE must be"):
        load_checkpoint_store(42)
