"""Devices in Django: credentials, the async helpers the broker uses, and the admin."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from django_app import devices
from django_app.models.devices import Device, DeviceCredential
from gateway.db import database_sync_to_async

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def fast_hashing(settings: object) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # type: ignore[attr-defined]


def _device(device_id: str = "dev-1", password: str = "s3cret") -> Device:
    device = Device.objects.create(device_id=device_id)
    credential = DeviceCredential(device=device)
    credential.set_password(password)
    credential.save()
    return device


def test_a_credential_stores_a_hash_never_the_password() -> None:
    credential = _device().credential
    assert credential.password.startswith("md5$")
    assert "s3cret" not in credential.password
    assert credential.check_password("s3cret")
    assert not credential.check_password("S3cret")
    assert credential.rotated is not None


async def test_authenticate_returns_the_device_for_the_right_password_only() -> None:
    await database_sync_to_async(_device)()
    found = await devices.authenticate("dev-1", "s3cret")
    assert found is not None
    assert found.device_id == "dev-1"
    assert await devices.authenticate("dev-1", "wrong") is None
    assert await devices.authenticate("nobody", "s3cret") is None


async def test_presence_and_state_helpers() -> None:
    await database_sync_to_async(_device)()
    assert await devices.mark_online("dev-1") == 1
    assert (await Device.objects.aget(device_id="dev-1")).online is True
    assert await devices.mark_offline("dev-1") == 1
    device = await Device.objects.aget(device_id="dev-1")
    assert device.online is False
    assert device.last_seen is not None
    await devices.update_state("dev-1", {"t": 20})
    updated = await devices.update_state("dev-1", {"battery": 90})
    assert updated is not None
    assert updated.state == {"t": 20, "battery": 90}
    assert await devices.update_state("ghost", {"t": 1}) is None
    created = await devices.update_state("ghost", {"t": 1}, create=True)
    assert created is not None
    assert created.state == {"t": 1}
    assert await devices.mark_online("unknown") == 0


@pytest.fixture
def admin_client() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("root", "r@example.com", "pw"))
    return client


@pytest.mark.urls("tests.django_app.device_admin_urls")
def test_the_device_list_shows_presence_and_state_and_searches(admin_client: Client) -> None:
    Device.objects.create(device_id="pump-1", online=True, state={"flow": 3})
    Device.objects.create(device_id="valve-2")
    page = admin_client.get("/admin/gateway/device/")
    assert page.status_code == 200
    assert b"pump-1" in page.content
    assert b"{&quot;flow&quot;: 3}" in page.content
    found = admin_client.get("/admin/gateway/device/", {"q": "valve"})
    assert b"valve-2" in found.content
    assert b"pump-1" not in found.content


@pytest.mark.urls("tests.django_app.device_admin_urls")
def test_the_admin_sets_a_device_password(admin_client: Client) -> None:
    form = {
        "device_id": "dev-9",
        "name": "Nine",
        "state": "{}",
        "credential-TOTAL_FORMS": "1",
        "credential-INITIAL_FORMS": "0",
        "credential-MIN_NUM_FORMS": "0",
        "credential-MAX_NUM_FORMS": "1",
        "credential-0-new_password": "fresh-pass",
        "credential-0-topics": '["devices/{device_id}/#"]',
    }
    response = admin_client.post("/admin/gateway/device/add/", form)
    assert response.status_code == 302, response.content.decode()[:2000]
    credential = DeviceCredential.objects.get(device__device_id="dev-9")
    assert credential.check_password("fresh-pass")
    assert credential.topics == ["devices/{device_id}/#"]


@pytest.mark.urls("tests.django_app.device_admin_urls")
def test_the_command_form_refuses_bad_json(admin_client: Client) -> None:
    device = Device.objects.create(device_id="dev-1")
    form = {
        "action": "send_command",
        "_selected_action": [str(device.pk)],
        "topic_suffix": "commands",
        "payload": "{oops",
        "apply": "1",
    }
    page = admin_client.post("/admin/gateway/device/", form)
    assert page.status_code == 200  # the form again, with the error
    assert b"Not valid JSON" in page.content
