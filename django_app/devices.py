"""Async helpers the embedded MQTT broker uses: device login, presence and state.

Consumers keep a device's latest state with `update_state`, or with `record_reading`, which
also keeps its last readings (bounded) for charts and the admin's device page. A state is
bounded too: serialized as JSON it stays within ``GATEWAY["DEVICE_STATE_MAX_BYTES"]`` (64 KiB),
else nothing is saved and `DeviceStateTooLarge` is raised (`record_reading` first drops its
oldest readings to make room).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Collection
from datetime import datetime
from typing import Any

from django.contrib.auth.hashers import make_password
from django.db import transaction
from django.utils import timezone

from django_app.models.devices import Device, DeviceCredential
from gateway.conf import gateway_settings
from gateway.db import database_sync_to_async
from gateway.exceptions import DeviceStateTooLarge
from gateway.passwords import check_password

__all__ = [
    "READINGS_KEPT",
    "READINGS_KEY",
    "DatabaseDeviceStore",
    "authenticate",
    "exists",
    "expire_silent",
    "last_readings",
    "mark_offline",
    "mark_online",
    "max_state_bytes",
    "record_presence",
    "record_reading",
    "state_size",
    "topics_for",
    "touch",
    "update_state",
]

READINGS_KEY = "readings"
"""The key of `Device.state` under which `record_reading` keeps a device's last readings."""
READINGS_KEPT = 30
"""How many readings `record_reading` keeps per device unless told otherwise."""

logger = logging.getLogger("gateway.devices")


def _authenticate(device_id: str, password: str) -> Device | None:
    """`authenticate` in one call, for synchronous code (it hashes on the calling thread)."""
    found = _credential(device_id)
    if found is None:
        # Hash anyway, so an unknown device id takes as long to refuse as a wrong password.
        make_password(password)
        return None
    return found.device if found.check_password(password) else None


def _credential(device_id: str) -> DeviceCredential | None:
    return (
        DeviceCredential.objects.select_related("device")
        .filter(device__device_id=device_id)
        .first()
    )


async def authenticate(device_id: str, password: str) -> Device | None:
    """The device whose id and password these are, or None.

    The credential is read on the database thread; the password is hashed on the hashing pool
    (`gateway.passwords`), so a burst of logins never holds up other database work.
    """
    credential = await database_sync_to_async(_credential)(device_id)
    encoded = credential.password if credential is not None else None
    if not await check_password(password, encoded) or credential is None:
        return None
    return credential.device


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
def record_presence(device_id: str, online: bool, seen: bool) -> int:
    """Set a device's presence; `seen` also stamps last_seen now."""
    fields: dict[str, Any] = {"online": online}
    if seen:
        fields["last_seen"] = timezone.now()
    return Device.objects.filter(device_id=device_id).update(**fields)


@database_sync_to_async
def expire_silent(before: datetime, keep: Collection[str]) -> list[str]:
    """Mark offline the online devices silent since `before` (all but `keep`); their ids."""
    with transaction.atomic():
        silent = Device.objects.select_for_update().filter(online=True, last_seen__lt=before)
        ids = [i for i in silent.values_list("device_id", flat=True) if i not in keep]
        Device.objects.filter(device_id__in=ids).update(online=False)
    return ids


@database_sync_to_async
def touch(device_id: str) -> int:
    """Record that a device was heard from just now."""
    return Device.objects.filter(device_id=device_id).update(last_seen=timezone.now())


@database_sync_to_async
def update_state(device_id: str, state: dict[str, Any], *, create: bool = False) -> Device | None:
    """Merge `state` into the device's state and mark it seen; creates the row if asked."""
    return _change_state(device_id, lambda old: {**old, **state}, create=create)


@database_sync_to_async
def record_reading(
    device_id: str, reading: dict[str, Any], *, keep: int = READINGS_KEPT
) -> Device | None:
    """Merge `reading` into the device's state and keep it among its last `keep` readings.

    The readings are under ``state["readings"]``, oldest first, each as
    ``{"received": "<ISO 8601 time>", "reading": {...}}``; `last_readings` reads them back.
    """
    if keep < 1:
        raise ValueError(f"keep must be at least 1, not {keep}")
    entry = {"received": timezone.now().isoformat(), "reading": reading}

    def change(old: dict[str, Any]) -> dict[str, Any]:
        kept = [*_readings_in(old), entry][-keep:]
        state = {**old, **reading, READINGS_KEY: kept}
        # The history gives way first: the oldest readings go while the state is too large.
        while len(kept) > 1 and state_size(state) > max_state_bytes():
            del kept[0]
        return state

    return _change_state(device_id, change, create=False)


def max_state_bytes() -> int:
    """``GATEWAY["DEVICE_STATE_MAX_BYTES"]``: the largest state a device may keep."""
    return int(gateway_settings.raw["DEVICE_STATE_MAX_BYTES"])


def state_size(state: Any) -> int:
    """How many bytes `state` takes as the JSON the database keeps."""
    return len(json.dumps(state).encode())


def last_readings(device: Device) -> list[dict[str, Any]]:
    """The readings `record_reading` kept for `device`, oldest first."""
    return _readings_in(device.state)


def _readings_in(state: Any) -> list[dict[str, Any]]:
    # State is JSON anyone may edit in the admin: keep only entries of the documented shape.
    kept = state.get(READINGS_KEY) if isinstance(state, dict) else None
    if not isinstance(kept, list):
        return []
    return [entry for entry in kept if _is_kept_reading(entry)]


def _is_kept_reading(entry: Any) -> bool:
    if not isinstance(entry, dict):
        return False
    return isinstance(entry.get("reading"), dict) and "received" in entry


def _change_state(
    device_id: str, change: Callable[[dict[str, Any]], dict[str, Any]], *, create: bool
) -> Device | None:
    # The row stays locked from read to write: a concurrent change waits, then applies to
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
        old = device.state if isinstance(device.state, dict) else {}
        device.state = _bounded(device_id, change(old))
        device.last_seen = timezone.now()
        device.save(update_fields=["state", "last_seen"])
    return device


def _bounded(device_id: str, state: dict[str, Any]) -> dict[str, Any]:
    size, limit = state_size(state), max_state_bytes()
    if size <= limit:
        return state
    message = (
        f"Device {device_id!r}: its state would take {size} bytes as JSON, over"
        f' GATEWAY["DEVICE_STATE_MAX_BYTES"] ({limit}); nothing was saved.'
    )
    logger.warning(message)
    raise DeviceStateTooLarge(message, device_id=device_id, size=size, limit=limit)


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

    async def record_presence(self, device_id: str, online: bool, *, seen: bool) -> None:
        await record_presence(device_id, online, seen)

    async def expire_silent(self, before: datetime, keep: Collection[str]) -> list[str]:
        return await expire_silent(before, keep)
