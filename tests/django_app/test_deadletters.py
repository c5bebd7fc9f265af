"""Dead letters in the database: storing, replaying, and the admin."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from datetime import UTC, datetime

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import User
from django.test import Client, override_settings

from django_app.deadletters import areplay, replay, store_dead_letter
from django_app.models.deadletters import DeadLetter, decode_scope, encode_scope
from gateway.adapters import AdapterContext
from gateway.conf import DEFAULTS
from gateway.db import database_sync_to_async
from gateway.layers import get_channel_layer
from gateway.metrics import MetricsRegistry
from gateway.mqtt import PUBLISH_CHANNEL
from gateway.pipeline import DeadLetter as Letter
from gateway.pipeline import RetryPolicy
from protocol_adapters.mqtt.common import InboundMessage, MqttIntake, MqttOptions
from tests.django_app.deadletter_app import OperatorMissing, application

APP = "tests.django_app.deadletter_app.application"
WAIT = 10.0


def letter(payload: bytes = b'{"n": 1}', **scope: object) -> Letter:
    return Letter(
        protocol="mqtt",
        key="devices/d1/reading",
        scope={"type": "mqtt", "topic": "devices/d1/reading", "adapter": "broker", **scope},
        payload=payload,
        error="RuntimeError('boom')",
        attempts=3,
        failed_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    )


async def fail_once_through_the_intake() -> DeadLetter:
    """Run a message through a real intake whose app fails: a DeadLetter row results."""
    context = AdapterContext(application, "broker", {}, MetricsRegistry(), store_dead_letter)
    options = MqttOptions(retry=RetryPolicy(2, 0.001, 0.001, jitter=0.0))

    async def nowhere(event: object) -> None:
        raise AssertionError("the failing app publishes nothing")

    intake = MqttIntake(context, broker="embedded", options=options, publish=nowhere)
    message = InboundMessage("devices/d1/reading", b'{"n": 7}', qos=1, message_id=5)
    outcome = await asyncio.wait_for(intake.run(message), WAIT)
    await intake.aclose(WAIT)
    assert outcome.status == "dead_lettered"
    return await DeadLetter.objects.aget()


def test_store_dead_letter_is_the_default_handler() -> None:
    assert DEFAULTS["DEAD_LETTER_HANDLER"] == "django_app.deadletters.store_dead_letter"


def test_scope_encoding_round_trips_bytes_and_tuples() -> None:
    scope = {
        "type": "mqtt",
        "properties": {"correlation_data": b"\x00\xff", "user_properties": [("a", "b")]},
        "url_route": {"args": ("x",), "kwargs": {}},
        "state": {"pool": object()},
    }
    encoded = encode_scope(scope)
    assert "state" not in encoded
    assert encoded["properties"]["correlation_data"] == {"__bytes__": "AP8="}
    assert decode_scope(encoded) == {k: v for k, v in scope.items() if k != "state"}


@pytest.mark.django_db(transaction=True)
async def test_store_dead_letter_saves_a_row(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="gateway.deadletter"):
        await store_dead_letter(letter(b"\xff", properties={"correlation_data": b"id"}))
    row = await DeadLetter.objects.aget()
    assert (row.protocol, row.adapter, row.key, row.attempts) == (
        "mqtt",
        "broker",
        "devices/d1/reading",
        3,
    )
    assert row.get_payload() == b"\xff"
    assert row.get_scope()["properties"] == {"correlation_data": b"id"}
    assert row.error == "RuntimeError('boom')"
    assert (row.replayed_at, row.replay_count) == (None, 0)
    assert "dead letter: protocol=mqtt key='devices/d1/reading'" in caplog.text


@pytest.mark.django_db(transaction=True)
async def test_a_stored_letter_is_logged_in_one_line(caplog: pytest.LogCaptureFixture) -> None:
    error = "RouteNotFound('no route')\nTraceback (most recent call last):\n  ...\n"
    with caplog.at_level(logging.INFO, logger="gateway.deadletter"):
        await store_dead_letter(dataclasses.replace(letter(), error=error))
    assert (await DeadLetter.objects.aget()).error == error  # the row keeps the traceback
    [record] = caplog.records
    assert record.exc_info is None
    assert record.getMessage().endswith(
        "error=RouteNotFound('no route') (stored, the traceback is in the admin)"
    )


async def test_store_dead_letter_logs_everything_when_the_database_fails(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # No django_db mark: every database access fails here, as with a database that is down.
    with caplog.at_level(logging.ERROR, logger="gateway.deadletter"):
        await store_dead_letter(letter(b"payload!"))
    assert "could not store dead letter" in caplog.text
    assert "cGF5bG9hZCE=" in caplog.text  # the payload, base64
    assert "RuntimeError('boom')" in caplog.text


@pytest.mark.django_db(transaction=True)
async def test_failed_message_is_replayed_once_the_cause_is_fixed() -> None:
    row = await fail_once_through_the_intake()
    assert row.attempts == 2
    assert "OperatorMissing" in row.error
    assert row.get_scope()["message_id"] == 5

    await database_sync_to_async(User.objects.create_user)("operator")
    await areplay(row, application)

    await row.arefresh_from_db()
    assert row.replay_count == 1
    assert row.replayed_at is not None
    layer = get_channel_layer()
    assert layer is not None
    published = await asyncio.wait_for(layer.receive(PUBLISH_CHANNEL), WAIT)
    assert (published["topic"], published["payload"]) == (
        "devices/d1/ack",
        b'{"seen":7,"dup":true}',
    )


@pytest.mark.django_db(transaction=True)
async def test_failed_replay_records_the_new_error_and_keeps_the_row() -> None:
    row = await fail_once_through_the_intake()
    with pytest.raises(OperatorMissing):
        await areplay(row, application)
    await row.arefresh_from_db()
    assert (row.replay_count, row.replayed_at) == (1, None)
    assert row.error.startswith("replay 1 failed: OperatorMissing")
    assert await DeadLetter.objects.acount() == 1


@pytest.mark.django_db(transaction=True)
def test_sync_replay_uses_settings_asgi_application() -> None:
    async_to_sync(store_dead_letter)(letter(b'{"n": 3}'))
    User.objects.create_user("operator")
    row = DeadLetter.objects.get()
    with override_settings(ASGI_APPLICATION=APP):
        replay(row)
    row.refresh_from_db()
    assert row.replay_count == 1
    assert row.replayed_at is not None


# --- admin -----------------------------------------------------------------------------------


@pytest.fixture
def admin_client() -> Client:
    User.objects.create_superuser("admin", "admin@example.com", "pw")
    client = Client()
    client.force_login(User.objects.get(username="admin"))
    return client


@pytest.mark.django_db(transaction=True)
@override_settings(ROOT_URLCONF="tests.django_app.deadletter_app", ASGI_APPLICATION=APP)
def test_admin_lists_shows_and_replays(admin_client: Client) -> None:
    async_to_sync(store_dead_letter)(letter(b'{"n": 1}'))
    async_to_sync(store_dead_letter)(letter(b"\x00\x01binary", topic="other"))
    first, second = DeadLetter.objects.order_by("id")

    listing = admin_client.get("/admin/gateway/deadletter/?q=devices")
    assert listing.status_code == 200
    assert b"devices/d1/reading" in listing.content

    detail = admin_client.get(f"/admin/gateway/deadletter/{first.pk}/change/")
    assert detail.status_code == 200
    assert b"{&quot;n&quot;: 1}" in detail.content
    assert b"RuntimeError(&#x27;boom&#x27;)" in detail.content
    binary = admin_client.get(f"/admin/gateway/deadletter/{second.pk}/change/")
    assert b"00 01 62 69 6e 61 72 79" in binary.content

    # The operator is missing: both replays fail, and the admin says so.
    action = {"action": "replay_selected", "_selected_action": [first.pk, second.pk]}
    failed = admin_client.post("/admin/gateway/deadletter/", action, follow=True)
    assert b"2 replay(s) failed" in failed.content
    assert b"OperatorMissing" in failed.content

    User.objects.create_user("operator")
    first_only = {"action": "replay_selected", "_selected_action": [first.pk]}
    done = admin_client.post("/admin/gateway/deadletter/", first_only, follow=True)
    assert b"Replayed 1 dead letter(s)." in done.content
    first.refresh_from_db()
    assert (first.replay_count, first.replayed_at is not None) == (2, True)


@pytest.mark.django_db(transaction=True)
@override_settings(ROOT_URLCONF="tests.django_app.deadletter_app")
def test_admin_cannot_add_or_edit(admin_client: Client) -> None:
    async_to_sync(store_dead_letter)(letter())
    row = DeadLetter.objects.get()
    assert admin_client.get("/admin/gateway/deadletter/add/").status_code == 403
    response = admin_client.post(f"/admin/gateway/deadletter/{row.pk}/change/", {"key": "x"})
    assert response.status_code == 403
    row.refresh_from_db()
    assert row.key == "devices/d1/reading"


def test_strings_with_nul_are_encoded_apart_and_restored() -> None:
    scope = {"helo": "evil\x00host", "plain": "ok", "nested": ["a\x00", ("b", "c\x00")]}
    encoded = encode_scope(scope)
    assert "\\u0000" not in json.dumps(encoded)  # what PostgreSQL's jsonb would refuse
    assert encoded["plain"] == "ok"
    assert decode_scope(encoded) == scope
