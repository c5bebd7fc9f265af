"""The devices an MQTT broker authenticates: the store protocol adapters use.

The embedded broker logs devices in, reads their topic filters and records their presence
through a `DeviceStore`; an adapter's ``PRESENCE`` option records the presence devices
announce on their status topic through the same store (`record_presence`, `expire_silent`).
`django_app.devices.DatabaseDeviceStore` (the default) keeps them in the database, and the
broker's ``DEVICE_STORE`` option (``PRESENCE["STORE"]``) may name another class.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any, Protocol

from django.utils.module_loading import import_string

from gateway.exceptions import ImproperlyConfiguredGateway

__all__ = ["DEFAULT_DEVICE_STORE", "DeviceStore", "load_device_store"]

DEFAULT_DEVICE_STORE = "django_app.devices.DatabaseDeviceStore"


class DeviceStore(Protocol):
    """Device logins, topic filters and presence; every method is async."""

    async def authenticate(self, device_id: str, password: str) -> str | None:
        """The device id these credentials belong to, or None.

        Adapters call it in the turn their `gateway.logins.LoginGate` gives. Hash off the
        database thread (`gateway.passwords.check_password`), so logins never hold it up.
        """

    async def exists(self, device_id: str) -> bool:
        """Whether a device has this id (its client id is then reserved to it)."""

    async def topics_for(self, device_id: str) -> list[str]:
        """The device's own topic filters; [] when it uses the broker's ACL."""

    async def mark_online(self, device_id: str) -> None:
        """The device connected."""

    async def mark_offline(self, device_id: str) -> None:
        """The device's last connection ended."""

    async def record_presence(self, device_id: str, online: bool, *, seen: bool) -> None:
        """The device is online or offline; with `seen`, it was heard from just now."""

    async def expire_silent(self, before: datetime, keep: Collection[str]) -> list[str]:
        """Mark offline the online devices not heard from since `before`, but those in `keep`.

        Returns their ids.
        """


def load_device_store(setting: Any) -> DeviceStore:
    """The store a ``DEVICE_STORE`` option names (a dotted path to a class), or the default."""
    path = DEFAULT_DEVICE_STORE if setting is None else setting
    if not isinstance(path, str):
        raise ImproperlyConfiguredGateway(f"DEVICE_STORE must be a dotted path: {setting!r}")
    store: DeviceStore = import_string(path)()
    return store
