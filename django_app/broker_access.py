"""Django's devices pushed to the external broker's access control (`gateway.broker_access`).

Saving or deleting a `Device` or its `DeviceCredential` pushes that device to every
broker-access adapter once the transaction commits (a device without a credential may not log
in: it is disabled there; a deleted one is deleted). Django stores only a hash of a device's
password; a broker that needs the plaintext gets it only from `set_password`, which keeps it
on the credential until the push after its save. A password changed any other way leaves the
broker's copy stale: the syncer then disables that device on the broker and says so.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from asgiref.sync import async_to_sync
from django.db import transaction
from django.db.models.signals import post_delete, post_save

from django_app.models.devices import Device, DeviceCredential
from gateway import broker_access
from gateway.broker_access import DeviceAccess, password_fingerprint
from gateway.db import database_sync_to_async

__all__ = ["DatabaseDeviceAccess", "connect_signals", "device_access", "set_password"]

logger = logging.getLogger("gateway.mqtt")
_PLAINTEXT = "_broker_password"


def set_password(credential: DeviceCredential, raw_password: str) -> None:
    """`credential.set_password`, and the plaintext kept for the broker until the next save."""
    credential.set_password(raw_password)
    setattr(credential, _PLAINTEXT, raw_password)


def device_access(device_ids: Sequence[str] | None = None) -> list[DeviceAccess]:
    """The named devices as `DeviceAccess` (absent ones: exists=False), or all of them."""
    devices = Device.objects.select_related("credential").order_by("device_id")
    if device_ids is not None:
        devices = devices.filter(device_id__in=list(device_ids))
    found = {device.device_id: _access(device) for device in devices}
    absent = [DeviceAccess(i, exists=False) for i in device_ids or () if i not in found]
    return [*found.values(), *absent]


def _access(device: Device, password: str | None = None) -> DeviceAccess:
    credential = DeviceCredential.objects.filter(device=device).first()
    if credential is None:
        return DeviceAccess(device.device_id, enabled=False)
    topics = credential.topics if isinstance(credential.topics, list) else []
    return DeviceAccess(
        device.device_id,
        enabled=True,
        topics=tuple(str(topic) for topic in topics),
        fingerprint=password_fingerprint(credential.password),
        password=password,
    )


class DatabaseDeviceAccess:
    """`gateway.broker_access.DeviceAccessSource` on the `Device` models."""

    async def device_access(self, device_ids: Sequence[str] | None = None) -> list[DeviceAccess]:
        return await database_sync_to_async(device_access)(device_ids)


def _push(device_id: str, password: str | None) -> None:
    if not broker_access.syncers():
        return
    device = Device.objects.filter(device_id=device_id).first()
    access = _access(device, password) if device else DeviceAccess(device_id, exists=False)
    try:
        async_to_sync(broker_access.push)([access])
    except OSError as exc:  # the broker is down: the next resync catches up
        logger.error("device %s not pushed to the broker: %s", device_id, exc)
    except Exception:  # the change is committed: the save must not fail for the broker
        logger.exception("device %s not pushed to the broker", device_id)


def _device_changed(sender: Any, instance: Device, **kwargs: Any) -> None:
    device_id = instance.device_id
    transaction.on_commit(lambda: _push(device_id, None))


def _credential_changed(sender: Any, instance: DeviceCredential, **kwargs: Any) -> None:
    password = instance.__dict__.pop(_PLAINTEXT, None)
    try:
        device_id = instance.device.device_id
    except Device.DoesNotExist:  # deleted with its device: the device's signal pushes
        return
    transaction.on_commit(lambda: _push(device_id, password))


def connect_signals() -> None:
    """Connect the receivers (idempotent: each has a dispatch uid)."""
    for name, signal in (("save", post_save), ("delete", post_delete)):
        signal.connect(_device_changed, Device, dispatch_uid=f"broker-access-{name}-device")
        signal.connect(_credential_changed, DeviceCredential,
                       dispatch_uid=f"broker-access-{name}-credential")  # fmt: skip
