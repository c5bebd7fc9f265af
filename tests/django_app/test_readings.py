"""A device's last readings: kept bounded in its state, shown on its admin page."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import User
from django.test import Client

from django_app import devices
from django_app.models.devices import Device

pytestmark = pytest.mark.django_db(transaction=True)


async def test_record_reading_merges_the_reading_and_keeps_the_last_ones() -> None:
    await Device.objects.acreate(device_id="dev-1", state={"firmware": "1.2"})
    for n in range(5):
        device = await devices.record_reading("dev-1", {"temperature": 20 + n}, keep=3)
    assert device is not None
    assert device.state["temperature"] == 24
    assert device.state["firmware"] == "1.2"
    assert device.last_seen is not None
    kept = devices.last_readings(await Device.objects.aget(device_id="dev-1"))
    assert [entry["reading"] for entry in kept] == [
        {"temperature": 22},
        {"temperature": 23},
        {"temperature": 24},
    ]
    assert all(isinstance(entry["received"], str) for entry in kept)


async def test_record_reading_ignores_unknown_devices_and_refuses_keeping_none() -> None:
    assert await devices.record_reading("ghost", {"temperature": 1}) is None
    assert not await Device.objects.filter(device_id="ghost").aexists()
    with pytest.raises(ValueError, match="keep must be at least 1"):
        await devices.record_reading("ghost", {"temperature": 1}, keep=0)


def test_last_readings_skips_what_is_not_a_kept_reading() -> None:
    device = Device(state={"readings": [{"reading": {"t": 1}, "received": "x"}, 3, {"t": 2}]})
    assert devices.last_readings(device) == [{"reading": {"t": 1}, "received": "x"}]
    assert devices.last_readings(Device(state={"readings": "none"})) == []
    assert devices.last_readings(Device(state={})) == []


@pytest.fixture
def admin_client() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("root", "r@example.com", "pw"))
    return client


@pytest.mark.urls("tests.django_app.device_admin_urls")
def test_the_device_page_shows_the_last_readings_newest_first(admin_client: Client) -> None:
    device = Device.objects.create(device_id="pump-1")
    async_to_sync(devices.record_reading)("pump-1", {"flow": 3.5})
    async_to_sync(devices.record_reading)("pump-1", {"flow": 4.25})
    page = admin_client.get(f"/admin/gateway/device/{device.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Last readings" in html
    table = html.split('<table class="last-readings">')[1].split("</table>")[0]
    assert table.index("{&quot;flow&quot;: 4.25}") < table.index("{&quot;flow&quot;: 3.5}")
    listing = admin_client.get("/admin/gateway/device/").content.decode()
    summary = listing.split('class="field-state_summary"')[1].split("</td>")[0]
    assert summary.endswith("{&quot;flow&quot;: 4.25}")  # the latest state, not the readings kept


@pytest.mark.urls("tests.django_app.device_admin_urls")
def test_a_device_without_readings_says_so(admin_client: Client) -> None:
    device = Device.objects.create(device_id="valve-2")
    page = admin_client.get(f"/admin/gateway/device/{device.pk}/change/")
    assert b"No readings yet." in page.content


@pytest.mark.urls("tests.django_app.device_admin_urls")
def test_the_admin_page_does_not_write_the_state_back(admin_client: Client) -> None:
    device = Device.objects.create(device_id="valve-9", state={"temperature": 1})
    page = admin_client.get(f"/admin/gateway/device/{device.pk}/change/")
    assert page.status_code == 200
    assert 'name="state"' not in page.content.decode()  # shown, not editable
    async_to_sync(devices.record_reading)("valve-9", {"temperature": 2})  # while the page is open
    admin_client.post(
        f"/admin/gateway/device/{device.pk}/change/",
        {"device_id": "valve-9", "name": "Valve", "state": '{"temperature": 1}'}
        | {"credential-TOTAL_FORMS": "0", "credential-INITIAL_FORMS": "0"},
    )
    device.refresh_from_db()
    assert device.name == "Valve"
    assert device.state["temperature"] == 2
    assert len(devices.last_readings(device)) == 1
