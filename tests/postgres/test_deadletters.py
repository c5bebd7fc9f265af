"""Dead letters on PostgreSQL: binary payloads and scopes with bytes round-trip and replay."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from django.contrib.auth.models import User

from django_app.deadletters import areplay, store_dead_letter
from django_app.models.deadletters import DeadLetter
from gateway.db import database_sync_to_async
from gateway.layers import get_channel_layer
from gateway.mqtt import PUBLISH_CHANNEL
from gateway.pipeline import DeadLetter as Letter
from tests.django_app.deadletter_app import OperatorMissing, application

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

WAIT = 10.0
BINARY = bytes(range(256))  # every byte value, NUL and invalid UTF-8 included


def letter(payload: bytes) -> Letter:
    return Letter(
        protocol="mqtt",
        key="devices/d1/reading",
        scope={
            "type": "mqtt",
            "topic": "devices/d1/reading",
            "adapter": "broker",
            "qos": 1,
            "retain": False,
            "message_id": 9,
            "properties": {
                "correlation_data": b"\x00\xff\x80id",
                "user_properties": [("unit", "°C"), ("raw", "a\\u0000b")],
            },
        },
        payload=payload,
        error="RuntimeError('boom')",
        attempts=3,
        failed_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    )


async def test_binary_payload_and_bytes_in_the_scope_round_trip() -> None:
    await store_dead_letter(letter(BINARY))
    row = await DeadLetter.objects.aget()
    assert row.get_payload() == BINARY
    scope = row.get_scope()
    assert scope["properties"] == {
        "correlation_data": b"\x00\xff\x80id",
        "user_properties": [("unit", "°C"), ("raw", "a\\u0000b")],
    }
    assert (scope["qos"], scope["retain"], scope["message_id"]) == (1, False, 9)
    assert row.failed_at == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    # jsonb is queryable: the admin and operators can filter on scope keys.
    assert await DeadLetter.objects.filter(scope__topic="devices/d1/reading").acount() == 1


async def test_stored_letter_replays_once_the_cause_is_fixed() -> None:
    await store_dead_letter(letter(b'{"n": 7}'))
    row = await DeadLetter.objects.aget()
    with pytest.raises(OperatorMissing):
        await areplay(row, application)
    await row.arefresh_from_db()
    assert (row.replay_count, row.replayed_at) == (1, None)
    assert row.error.startswith("replay 1 failed: OperatorMissing")

    await database_sync_to_async(User.objects.create_user)("operator")
    await areplay(row, application)
    await row.arefresh_from_db()
    assert row.replay_count == 2
    assert row.replayed_at is not None
    layer = get_channel_layer()
    assert layer is not None
    published = await asyncio.wait_for(layer.receive(PUBLISH_CHANNEL), WAIT)
    assert (published["topic"], published["payload"]) == (
        "devices/d1/ack",
        b'{"seen":7,"dup":true}',
    )


async def test_nul_in_scope_strings_key_and_error_is_stored_and_restored() -> None:
    base = letter(b"x")
    nul = Letter(
        protocol="email",
        key="inbox\x00odd",
        scope={"type": "email", "helo": "evil\x00host", "recipient": "support@example.com"},
        payload=b"raw",
        error="ValueError('bad\x00byte')",
        attempts=base.attempts,
        failed_at=base.failed_at,
    )
    await store_dead_letter(nul)
    row = await DeadLetter.objects.aget()
    assert row.get_scope()["helo"] == "evil\x00host"  # restored exactly, for a replay
    assert row.key == "inbox\ufffdodd"
    assert "bad\ufffdbyte" in row.error
