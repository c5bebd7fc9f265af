"""A device's last readings on PostgreSQL: readings racing from two processes are both kept."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from asgiref.sync import async_to_sync

from django_app.devices import last_readings, record_reading
from django_app.models.devices import Device
from tests.postgres.support import race_behind_lock

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_readings_racing_from_two_processes_are_both_kept() -> None:
    Device.objects.create(device_id="meter-1", state={"firmware": "2.0"})

    def recording(reading: dict[str, object]) -> Callable[[], Device | None]:
        return lambda: async_to_sync(record_reading)("meter-1", reading, keep=5)

    race_behind_lock(
        "SELECT id FROM gateway_device WHERE device_id = %s FOR UPDATE",
        ("meter-1",),
        recording({"kwh": 1}),
        recording({"kwh": 2}),
    )
    device = Device.objects.get(device_id="meter-1")
    assert [entry["reading"] for entry in last_readings(device)] == [{"kwh": 1}, {"kwh": 2}]
    assert device.state["kwh"] == 2
    assert device.state["firmware"] == "2.0"
