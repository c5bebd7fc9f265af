"""Device login and presence on PostgreSQL, through `django_app.devices`."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from asgiref.sync import async_to_sync

from django_app.devices import authenticate, mark_offline, mark_online, topics_for, update_state
from django_app.models.devices import Device, DeviceCredential
from gateway.db import database_sync_to_async
from tests.postgres.support import race_behind_lock

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def make_device(device_id: str, password: str, topics: list[str]) -> None:
    device = Device.objects.create(device_id=device_id, name="Boiler")
    credential = DeviceCredential(device=device, topics=topics)
    credential.set_password(password)
    credential.save()


async def test_credential_check() -> None:
    await database_sync_to_async(make_device)("boiler-1", "s3cret", [])
    device = await authenticate("boiler-1", "s3cret")
    assert device is not None
    assert device.device_id == "boiler-1"
    assert await authenticate("boiler-1", "wrong") is None
    assert await authenticate("nobody", "s3cret") is None


async def test_topics_override_round_trips_as_json() -> None:
    await database_sync_to_async(make_device)("boiler-2", "pw", ["devices/{device_id}/#", "ota/#"])
    assert await topics_for("boiler-2") == ["devices/{device_id}/#", "ota/#"]
    assert await topics_for("unknown") == []


async def test_online_then_offline() -> None:
    await database_sync_to_async(make_device)("boiler-3", "pw", [])
    assert await mark_online("boiler-3") == 1
    online = await Device.objects.aget(device_id="boiler-3")
    assert online.online
    assert online.last_seen is not None

    assert await mark_offline("boiler-3") == 1
    offline = await Device.objects.aget(device_id="boiler-3")
    assert not offline.online
    assert offline.last_seen is not None
    assert offline.last_seen >= online.last_seen
    assert await mark_online("unknown") == 0


async def test_state_merges_into_jsonb() -> None:
    await database_sync_to_async(make_device)("boiler-4", "pw", [])
    await update_state("boiler-4", {"temp": 21.5, "mode": "eco"})
    device = await update_state("boiler-4", {"temp": 22, "tags": ["a", "ü"]})
    assert device is not None
    stored = await Device.objects.aget(device_id="boiler-4")
    assert stored.state == {"temp": 22, "mode": "eco", "tags": ["a", "ü"]}
    assert await Device.objects.filter(state__mode="eco").acount() == 1
    assert await update_state("unknown", {"x": 1}) is None
    created = await update_state("boiler-5", {"x": 1}, create=True)
    assert created is not None
    assert created.state == {"x": 1}


def test_state_updates_racing_from_two_processes_both_merge() -> None:
    make_device("boiler-6", "pw", [])

    def merging(state: dict[str, object]) -> Callable[[], Device | None]:
        return lambda: async_to_sync(update_state)("boiler-6", state)

    race_behind_lock(
        "SELECT id FROM gateway_device WHERE device_id = %s FOR UPDATE",
        ("boiler-6",),
        merging({"temp": 21}),
        merging({"mode": "eco"}),
    )
    assert Device.objects.get(device_id="boiler-6").state == {"temp": 21, "mode": "eco"}


def test_first_state_of_a_new_device_racing_from_two_processes() -> None:
    def creating(state: dict[str, object]) -> Callable[[], Device | None]:
        return lambda: async_to_sync(update_state)("boiler-7", state, create=True)

    race_behind_lock(
        "LOCK TABLE gateway_device IN SHARE MODE", (), creating({"a": 1}), creating({"b": 2})
    )
    assert Device.objects.get(device_id="boiler-7").state == {"a": 1, "b": 2}
