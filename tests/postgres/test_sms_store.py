"""`SmsMessage` on PostgreSQL: one row per MessageSid and forward-only status under races."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from asgiref.sync import async_to_sync

from django_app.models.sms import DatabaseSmsStore, SmsMessage, SmsOptOut
from gateway.sms import SmsRecord
from tests.postgres.support import race_behind_lock

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

SID = "SM0123456789abcdef0123456789abcdef"
# Every writer waits behind these; plain SELECTs do not.
LOCK_TABLE = "LOCK TABLE gateway_smsmessage IN SHARE MODE"
LOCK_ROW = "SELECT id FROM gateway_smsmessage WHERE sid = %s FOR UPDATE"


def outbound(status: str = "queued", body: str = "Your code is 1234") -> SmsRecord:
    return SmsRecord("outbound", SID, "+15550001111", "+15550002222", body, status)


def recording(record: SmsRecord) -> Callable[[], bool]:
    """A gateway process storing a message (a webhook delivered to two processes)."""
    return lambda: async_to_sync(DatabaseSmsStore().record)(record)


def updating(status: str) -> Callable[[], bool]:
    """A gateway process applying one status callback."""
    return lambda: async_to_sync(DatabaseSmsStore().update_status)(SID, status, "")


def test_same_sid_recorded_at_once_by_two_processes_gives_one_row() -> None:
    results = race_behind_lock(
        LOCK_TABLE, (), recording(outbound(body="first")), recording(outbound(body="second"))
    )
    assert sorted(results) == [False, True]
    row = SmsMessage.objects.get()
    assert row.sid == SID
    assert row.body == ("first" if results[0] else "second")  # the winner's row, untouched


@pytest.mark.parametrize(
    ("first", "second", "moved", "final"),
    [
        ("delivered", "sent", [True, False], "delivered"),  # a late "sent" must not win
        ("sent", "delivered", [True, True], "delivered"),
        ("read", "delivered", [True, False], "read"),
        ("failed", "sending", [True, False], "failed"),
        ("delivered", "delivered", [True, False], "delivered"),  # a retried callback
    ],
)
def test_racing_status_callbacks_only_move_forward(
    first: str, second: str, moved: list[bool], final: str
) -> None:
    assert async_to_sync(DatabaseSmsStore().record)(outbound())
    # Both callbacks arrive while the row says "queued"; the row lock lets `first` in first.
    results = race_behind_lock(LOCK_ROW, (SID,), updating(first), updating(second))
    assert results == moved
    assert SmsMessage.objects.get(sid=SID).status == final


def test_body_with_nul_characters_is_stored() -> None:
    # PostgreSQL text columns refuse U+0000; an inbound message must still get its row.
    record = SmsRecord("inbound", SID, "+15550002222", "+15550001111", "a\x00b", "received")
    store = DatabaseSmsStore()
    assert async_to_sync(store.record)(record)
    assert not async_to_sync(store.record)(record)
    assert SmsMessage.objects.get(sid=SID).body == "a\ufffdb"


def test_same_number_opting_out_at_once_in_two_processes() -> None:
    def opting_out() -> None:
        async_to_sync(DatabaseSmsStore().set_opted_out)("+1 (555) 000-2222", True)

    race_behind_lock("LOCK TABLE gateway_smsoptout IN SHARE MODE", (), opting_out, opting_out)
    assert SmsOptOut.objects.count() == 1
    assert async_to_sync(DatabaseSmsStore().is_opted_out)("+15550002222")
