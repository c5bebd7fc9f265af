"""The login path of login_flood.py's ``before`` mode: the whole check on the database thread."""

from __future__ import annotations

from django_app.devices import DatabaseDeviceStore, _authenticate
from gateway.db import database_sync_to_async

_on_the_database_thread = database_sync_to_async(_authenticate)


class DatabaseThreadStore(DatabaseDeviceStore):
    """Reads the credential and hashes the password in one call on the database thread."""

    async def authenticate(self, device_id: str, password: str) -> str | None:
        if not device_id or not password:
            return None
        device = await _on_the_database_thread(device_id, password)
        return device.device_id if device is not None else None
