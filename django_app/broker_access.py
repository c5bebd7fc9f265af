"""Django's devices pushed to the external broker's access control (`gateway.broker_access`).

Saving or deleting a `Device` or its `DeviceCredential` pushes that device to every
broker-access adapter once the transaction commits (a device without a credential may not log
in: it is disabled there; a deleted or renamed one is deleted). Saves of presence and state
alone (``update_fields`` within name, online, last_seen, state) push nothing.

Django stores only a hash of a device's password; a broker that needs the plaintext gets it
only from `set_password`, which keeps it on the credential until the push after its save. A
password changed any other way leaves the broker's copy stale: the syncer then disables that
device on the broker and says so.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from asgiref.sync import async_to_sync
from django.db import transaction
from django.db.models.signals import post_delete, post_save, pre_save

from django_app.models.devices import Device, DeviceCredential
from gateway import broker_access
from gateway.broker_access import DeviceAccess, password_fingerprint
from gateway.db import database_sync_to_async

__all__ = ["DatabaseDeviceAccess", "connect_signals", "device_access", "set_password"]

logger = logging.getLogger("gateway.mqtt")
_PLAINTEXT = "_broker_password"
_OLD_ID = "_broker_old_device_id"
_PRESENCE_FIELDS = frozenset({"name", "online", "last_seen", "state"})


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


def _push(device_ids: Sequence[str], password: str | None) -> None:
    try:
        if not broker_access.syncers():
            return
        found = {d.device_id: d for d in Device.objects.filter(device_id__in=list(device_ids))}
        access = [
            _access(found[i], password) if i in found else DeviceAccess(i, exists=False)
            for i in device_ids
        ]
        async_to_sync(broker_access.push)(access)
    except OSError as exc:  # the broker is down: the next resync catches up
        logger.error("devices %s not pushed to the broker: %s", ", ".join(device_ids), exc)
    except Exception:  # the change is committed: the save must not fail for the broker
        logger.exception("devices %s not pushed to the broker", ", ".join(device_ids))


def _device_renaming(sender: Any, instance: Device, **kwargs: Any) -> None:
    if instance.pk is None or kwargs.get("update_fields") is not None:
        return
    old = Device.objects.filter(pk=instance.pk).values_list("device_id", flat=True).first()
    if old is not None and old != instance.device_id:
        instance.__dict__[_OLD_ID] = old  # its broker client must go


def _device_changed(sender: Any, instance: Device, **kwargs: Any) -> None:
    fields = kwargs.get("update_fields")
    if fields is not None and set(fields) <= _PRESENCE_FIELDS:
        return  # presence and state: nothing the broker checks
    old = instance.__dict__.pop(_OLD_ID, None)
    ids = [instance.device_id, *([old] if old else [])]
    transaction.on_commit(lambda: _push(ids, None))


def _credential_changed(sender: Any, instance: DeviceCredential, **kwargs: Any) -> None:
    password = instance.__dict__.pop(_PLAINTEXT, None)
    try:
        device_id = instance.device.device_id
    except Device.DoesNotExist:  # deleted with its device: the device's signal pushes
        return
    transaction.on_commit(lambda: _push([device_id], password))


def connect_signals() -> None:
    """Connect the receivers (idempotent: each has a dispatch uid)."""
    pre_save.connect(_device_renaming, Device, dispatch_uid="broker-access-rename-device")
    for name, signal in (("save", post_save), ("delete", post_delete)):
        signal.connect(_device_changed, Device, dispatch_uid=f"broker-access-{name}-device")
        signal.connect(_credential_changed, DeviceCredential,
                       dispatch_uid=f"broker-access-{name}-credential")  # fmt: skip
