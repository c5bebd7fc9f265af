"""Async helpers the embedded MQTT broker uses: device login, presence and state."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.hashers import make_password
from django.db import transaction
from django.utils import timezone

from django_app.models.devices import Device, DeviceCredential
from gateway.db import database_sync_to_async

__all__ = [
    "DatabaseDeviceStore",
    "authenticate",
    "exists",
    "mark_offline",
    "mark_online",
    "topics_for",
    "touch",
    "update_state",
]


def _authenticate(device_id: str, password: str) -> Device | None:
    try:
        credential = DeviceCredential.objects.select_related("device").get(
            device__device_id=device_id
        )
    except DeviceCredential.DoesNotExist:
        # Hash anyway, so an unknown device id takes as long to refuse as a wrong password.
        make_password(password)
        return None
    return credential.device if credential.check_password(password) else None


authenticate = database_sync_to_async(_authenticate)
"""The device whose id and password these are, or None."""


@database_sync_to_async
def exists(device_id: str) -> bool:
    """Whether a device has this id."""
    return Device.objects.filter(device_id=device_id).exists()


@database_sync_to_async
def topics_for(device_id: str) -> list[str]:
    """The device's own topic filters override ([] when it uses the broker's default)."""
    topics = (
        DeviceCredential.objects.filter(device__device_id=device_id)
        .values_list("topics", flat=True)
        .first()
    )
    return [str(item) for item in topics] if isinstance(topics, list) else []


@database_sync_to_async
def mark_online(device_id: str) -> int:
    """Mark a device connected; returns how many rows changed (0 for an unknown id)."""
    return Device.objects.filter(device_id=device_id).update(online=True, last_seen=timezone.now())


@database_sync_to_async
def mark_offline(device_id: str) -> int:
    """Mark a device disconnected, seen now."""
    return Device.objects.filter(device_id=device_id).update(online=False, last_seen=timezone.now())


@database_sync_to_async
def touch(device_id: str) -> int:
    """Record that a device was heard from just now."""
    return Device.objects.filter(device_id=device_id).update(last_seen=timezone.now())


@database_sync_to_async
def update_state(device_id: str, state: dict[str, Any], *, create: bool = False) -> Device | None:
    """Merge `state` into the device's state and mark it seen; creates the row if asked."""
    # The row stays locked from read to write: a concurrent merge waits, then merges into
    # this one's result instead of overwriting it.
    with transaction.atomic():
        devices = Device.objects.select_for_update()
        if create:
            device, _ = devices.get_or_create(device_id=device_id)
        else:
            found = devices.filter(device_id=device_id).first()
            if found is None:
                return None
            device = found
        device.state = {**(device.state or {}), **state}
        device.last_seen = timezone.now()
        device.save(update_fields=["state", "last_seen"])
    return device


class DatabaseDeviceStore:
    """`gateway.devices.DeviceStore` on the `Device` and `DeviceCredential` models."""

    async def authenticate(self, device_id: str, password: str) -> str | None:
        if not device_id or not password:
            return None
        device = await authenticate(device_id, password)
        return device.device_id if device is not None else None

    async def exists(self, device_id: str) -> bool:
        return await exists(device_id)

    async def topics_for(self, device_id: str) -> list[str]:
        return await topics_for(device_id)

    async def mark_online(self, device_id: str) -> None:
        await mark_online(device_id)

    async def mark_offline(self, device_id: str) -> None:
        await mark_offline(device_id)
