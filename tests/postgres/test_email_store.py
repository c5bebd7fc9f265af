"""`InboundEmail` dedup on PostgreSQL when two gateway processes store the same message."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from email.message import EmailMessage

import pytest
from asgiref.sync import async_to_sync

from django_app.inbound_mail import DatabaseMailStore
from django_app.models import InboundEmail
from gateway.consumers.email import AsyncEmailConsumer
from gateway.email_store import Known
from gateway.pipeline import KeyedDispatcher, RetryPolicy
from protocol_adapters.email_common import EmailIntake, raw_digest, scope_from_raw
from routers import EmailToRouter, ProtocolTypeRouter, address
from tests.postgres.support import race_behind_lock

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

RAW = (
    b"From: alice@customer.test\r\nTo: support@example.com\r\nSubject: Help\r\n"
    b"Message-ID: <pg1@customer.test>\r\n\r\nbody\r\n"
)
# INSERTs wait behind this; the store's SELECTs (ACCESS SHARE) do not.
LOCK_TABLE = "LOCK TABLE gateway_inboundemail IN SHARE MODE"
WAIT = 30.0


def process_storing(recipients: Sequence[str]) -> Callable[[], list[Known | None]]:
    """A gateway process: records the outcome for each recipient, flushes, then looks up."""

    async def run() -> list[Known | None]:
        store = DatabaseMailStore()
        digest = raw_digest(RAW)
        scopes = [
            scope_from_raw(
                RAW, source="smtp", adapter="pg", sender="alice@customer.test", recipient=r
            )
            for r in recipients
        ]
        for scope in scopes:
            store.record(scope, digest, RAW, "Help", "handled", 1)
        assert await store.aclose(WAIT)
        # A fresh store answers from the database, not from its own pending records.
        fresh = DatabaseMailStore()
        return [await fresh.lookup(scope, digest) for scope in scopes]

    return async_to_sync(run)


def intake(calls: list[str]) -> EmailIntake:
    class Consumer(AsyncEmailConsumer):
        reply_limiter = None

        async def receive(self, message: EmailMessage) -> None:
            calls.append(self.scope["recipient"])

    app = ProtocolTypeRouter(
        {"email": EmailToRouter([address(r"support@example\.com", Consumer.as_asgi())])}
    )
    dispatcher = KeyedDispatcher("email", retry=RetryPolicy(attempts=1, initial_backoff=0.01))
    store = DatabaseMailStore()
    return EmailIntake(app, adapter="pg", source="smtp", dispatcher=dispatcher, store=store)


def test_same_message_stored_at_once_by_two_processes_gives_one_row(
    caplog: pytest.LogCaptureFixture,
) -> None:
    recipient = ["support@example.com"]
    with caplog.at_level(logging.ERROR, logger="gateway.email"):
        first, second = race_behind_lock(
            LOCK_TABLE, (), process_storing(recipient), process_storing(recipient)
        )
    assert first == second == [Known("handled", 1)]
    row = InboundEmail.objects.get()
    assert (row.recipient, row.status, bytes(row.raw)) == ("support@example.com", "handled", RAW)
    assert caplog.records == []  # no batch failed and was retried

    # A third process receiving it again sees the duplicate and does not run the app.
    calls: list[str] = []

    async def deliver_again() -> str:
        gate = intake(calls)
        try:
            delivery = await gate.deliver(RAW, sender="alice@customer.test", recipient=recipient[0])
        finally:
            await gate.aclose(WAIT)
        return delivery.status

    assert async_to_sync(deliver_again)() == "duplicate"
    assert calls == []
    assert InboundEmail.objects.count() == 1


def test_overlapping_batches_in_opposite_orders_commit_without_deadlock(
    caplog: pytest.LogCaptureFixture,
) -> None:
    recipients = [f"support+{n}@example.com" for n in range(5)]
    # A third writer's uncommitted row for the middle recipient (rolled back on release)
    # holds both batches up half-way, each holding the row locks of what it wrote so far.
    middle = (
        "INSERT INTO gateway_inboundemail (message_id, raw_sha256, raw, size, sender, "
        "recipient, subject, source, adapter, mailbox, status, attempts, error, received_at) "
        "VALUES (%s, %s, %s, 0, '', %s, '', 'smtp', '', '', 'failed', 1, '', now())"
    )
    params = ("pg1@customer.test", raw_digest(RAW), RAW, recipients[2])
    with caplog.at_level(logging.ERROR, logger="gateway.email"):
        first, second = race_behind_lock(
            middle, params, process_storing(recipients), process_storing(recipients[::-1])
        )
    assert first == second == [Known("handled", 1)] * 5
    stored = sorted(InboundEmail.objects.values_list("recipient", "status"))
    assert stored == [(recipient, "handled") for recipient in sorted(recipients)]
    # A deadlock would be broken by PostgreSQL aborting one batch, logged, and retried.
    assert [record.getMessage() for record in caplog.records] == []


def test_text_with_nul_characters_is_stored(caplog: pytest.LogCaptureFixture) -> None:
    # RFC 2047 lets a Subject decode to U+0000, which PostgreSQL text columns refuse.
    raw = RAW.replace(b"Subject: Help", b"Subject: =?utf-8?q?a=00b?=")
    calls: list[str] = []

    async def deliver_twice() -> list[str]:
        gate = intake(calls)
        statuses: list[str] = []
        try:
            for _ in range(2):
                delivery = await gate.deliver(
                    raw, sender="alice@customer.test", recipient="support@example.com"
                )
                statuses.append(delivery.status)
                assert await gate.store.flush(WAIT)
        finally:
            await gate.aclose(WAIT)
        return statuses

    with caplog.at_level(logging.ERROR, logger="gateway.email"):
        assert async_to_sync(deliver_twice)() == ["handled", "duplicate"]
    assert calls == ["support@example.com"]
    row = InboundEmail.objects.get()
    assert (row.subject, bytes(row.raw)) == ("a\ufffdb", raw)
    assert caplog.records == []
