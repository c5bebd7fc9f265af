"""Devices in Django drive an external broker's access control: the shapes both sides share.

Django's side (``django_app.broker_access``) describes devices as `DeviceAccess` and hands
them to every broker-access adapter in ``GATEWAY["ADAPTERS"]`` (one whose class has an
``access_syncer(options)`` classmethod, such as ``protocol_adapters.mqtt.MosquittoDynsec``):
one device at a time when the admin changes it (`push`), all of them at the gateway's start
and on ``manage.py syncbroker`` (`resync`). A syncer answers with a `SyncReport`.

A password reaches the broker only in the call that sets it: Django keeps a hash, a broker
such as Mosquitto's dynamic security needs the plaintext. `DeviceAccess.fingerprint` (a
digest of the stored hash) tells a syncer whether the broker's password is still the one
Django holds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from django.utils.module_loading import import_string

__all__ = [
    "DEFAULT_DEVICE_SOURCE",
    "AccessSyncer",
    "DeviceAccess",
    "DeviceAccessSource",
    "SyncReport",
    "load_device_source",
    "password_fingerprint",
    "push",
    "resync",
    "syncers",
]

DEFAULT_DEVICE_SOURCE = "django_app.broker_access.DatabaseDeviceAccess"


@dataclass(frozen=True)
class DeviceAccess:
    """What a broker must know of one device: may it log in, with what, on which topics."""

    device_id: str
    exists: bool = True
    """False for a device deleted in Django: the broker forgets it."""
    enabled: bool = False
    """Whether it may log in: it has a credential."""
    topics: tuple[str, ...] = ()
    """Its own topic filters (``{device_id}`` for its id); () for the syncer's default ACL."""
    fingerprint: str | None = None
    """A digest of the stored password hash; None without a credential."""
    password: str | None = field(default=None, repr=False)
    """The plaintext, only when it was set just now."""


@dataclass
class SyncReport:
    """What one sync changed on a broker, device ids per outcome."""

    name: str = ""
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    enabled: list[str] = field(default_factory=list)
    disabled: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    without_password: list[str] = field(default_factory=list)
    """Devices with a credential whose password the broker does not have (left disabled)."""
    conflicts: list[str] = field(default_factory=list)
    """Broker clients named like a device but not made by the gateway (left alone)."""
    errors: list[str] = field(default_factory=list)
    unchanged: int = 0

    def changed(self) -> bool:
        return any((self.created, self.updated, self.enabled, self.disabled, self.deleted))

    def lines(self) -> list[str]:
        """One line per non-empty outcome, for logs and ``syncbroker``."""
        found = [
            f"{label}: {', '.join(ids)}"
            for label, ids in (
                ("created", self.created),
                ("updated", self.updated),
                ("enabled", self.enabled),
                ("disabled", self.disabled),
                ("deleted", self.deleted),
                ("no password on the broker (set it again to enable)", self.without_password),
                ("not managed by the gateway, left alone", self.conflicts),
                ("errors", self.errors),
            )
            if ids
        ]
        return [*found, f"unchanged: {self.unchanged}"]


class AccessSyncer(Protocol):
    """Keeps one broker's clients and ACLs in step with the devices it is given."""

    name: str

    async def apply(self, devices: Sequence[DeviceAccess], *, complete: bool) -> SyncReport:
        """Bring the broker in step; `complete`: these are all devices, forget the others."""


class DeviceAccessSource(Protocol):
    """Reads devices as `DeviceAccess`; `django_app.broker_access.DatabaseDeviceAccess`."""

    async def device_access(self, device_ids: Sequence[str] | None = None) -> list[DeviceAccess]:
        """The named devices (absent ones with ``exists=False``), or all of them for None."""


def password_fingerprint(password_hash: str) -> str:
    """A digest of a stored password hash: tells two hashes apart, reveals nothing of them."""
    return hashlib.sha256(password_hash.encode()).hexdigest()[:24]


def load_device_source(setting: Any) -> DeviceAccessSource:
    """The source a ``DEVICE_SOURCE`` option names (a dotted path to a class), or the default."""
    source: DeviceAccessSource = import_string(setting or DEFAULT_DEVICE_SOURCE)()
    return source


def syncers() -> list[AccessSyncer]:
    """A syncer per enabled broker-access adapter of ``GATEWAY["ADAPTERS"]``."""
    from gateway.conf import GatewaySettings

    found: list[AccessSyncer] = []
    for entry in GatewaySettings().adapters:
        if not entry.enabled:
            continue
        try:
            backend = import_string(entry.backend)
        except ImportError:  # the system check reports it (gateway.E003)
            continue
        factory = getattr(backend, "access_syncer", None)
        if factory is not None:
            found.append(factory(entry.name, entry.options))
    return found


async def push(devices: Sequence[DeviceAccess]) -> list[SyncReport]:
    """Bring every broker in step with these devices (the others are not touched)."""
    return [await syncer.apply(devices, complete=False) for syncer in syncers()]


async def resync(source: DeviceAccessSource | None = None) -> list[SyncReport]:
    """Bring every broker in step with all devices; clients of deleted devices go."""
    found = syncers()
    if not found:
        return []
    devices = await (source or load_device_source(None)).device_access()
    return [await syncer.apply(devices, complete=True) for syncer in found]
