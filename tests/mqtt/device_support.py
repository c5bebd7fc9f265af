"""Devices with credentials, for tests of the embedded broker's authentication."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher

from django_app.models.devices import Device, DeviceCredential
from gateway.db import database_sync_to_async


@pytest.fixture
def fast_hashing(settings: Any) -> None:
    """A quick password hasher: the default one spends a third of a second per check."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@database_sync_to_async
def make_device(device_id: str, password: str, topics: Sequence[str] = ()) -> Device:
    """A device and its credential."""
    device = Device.objects.create(device_id=device_id, name=device_id.title())
    credential = DeviceCredential(device=device, topics=list(topics))
    credential.set_password(password)
    credential.save()
    return device


@database_sync_to_async
def get_device(device_id: str) -> Device:
    return Device.objects.get(device_id=device_id)


class CostlyHasher(PBKDF2PasswordHasher):
    """PBKDF2 at an eighth of Django's cost: each check takes a few tens of milliseconds."""

    iterations = 100_000


@pytest.fixture
def costly_hashing(settings: Any) -> None:
    """A hasher slow enough that a burst of logins queues, as Django's default makes it."""
    settings.PASSWORD_HASHERS = ["tests.mqtt.device_support.CostlyHasher"]
