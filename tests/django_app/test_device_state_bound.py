"""A device's state stays within GATEWAY["DEVICE_STATE_MAX_BYTES"], with a clear error past it."""

from __future__ import annotations

import logging

import pytest
from django.test import override_settings

from django_app import devices
from django_app.models.devices import Device
from gateway import DeviceStateTooLarge
from gateway.conf_checks import validate

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_state_over_the_default_64_kib_is_refused_and_nothing_saved(
    caplog: pytest.LogCaptureFixture,
) -> None:
    await Device.objects.acreate(device_id="dev-1", state={"firmware": "1.2"})
    with (
        caplog.at_level(logging.WARNING, "gateway.devices"),
        pytest.raises(DeviceStateTooLarge) as refused,
    ):
        await devices.update_state("dev-1", {"dump": "x" * 256 * 1024})
    assert (refused.value.device_id, refused.value.limit) == ("dev-1", 65536)
    assert refused.value.size > 256 * 1024
    assert 'over GATEWAY["DEVICE_STATE_MAX_BYTES"] (65536); nothing was saved' in str(refused.value)
    assert caplog.records[0].getMessage() == str(refused.value)
    assert (await Device.objects.aget(device_id="dev-1")).state == {"firmware": "1.2"}
    with pytest.raises(DeviceStateTooLarge):
        await devices.record_reading("dev-1", {"dump": "x" * 256 * 1024})
    device = await Device.objects.aget(device_id="dev-1")
    assert device.state == {"firmware": "1.2"}


@override_settings(GATEWAY={"DEVICE_STATE_MAX_BYTES": 4096})
async def test_large_readings_make_room_by_dropping_the_oldest_ones() -> None:
    await Device.objects.acreate(device_id="dev-2")
    for n in range(50):
        device = await devices.record_reading("dev-2", {"n": n, "trace": "t" * 500})
        assert device is not None
        assert devices.state_size(device.state) <= 4096
    kept = devices.last_readings(await Device.objects.aget(device_id="dev-2"))
    assert 1 < len(kept) < devices.READINGS_KEPT
    assert kept[-1]["reading"]["n"] == 49
    assert [entry["reading"]["n"] for entry in kept] == list(range(50 - len(kept), 50))


@override_settings(GATEWAY={"DEVICE_STATE_MAX_BYTES": 4096})
async def test_new_keys_on_every_reading_stop_at_the_bound() -> None:
    await Device.objects.acreate(device_id="dev-3")
    refused = []
    for n in range(100, 600):  # keys of one length: once full, the state stays full
        try:
            await devices.record_reading("dev-3", {f"sensor-{n}": n})
        except DeviceStateTooLarge:
            refused.append(n)
    state = (await Device.objects.aget(device_id="dev-3")).state
    assert devices.state_size(state) <= 4096
    assert refused == list(range(refused[0], 600))
    assert len(state) == refused[0] - 100 + 1  # every key before the bound, and the readings


def test_the_bound_is_a_checked_setting() -> None:
    [problem] = validate({"DEVICE_STATE_MAX_BYTES": 0})
    assert problem.message == 'GATEWAY["DEVICE_STATE_MAX_BYTES"] must be a positive integer, got 0'
