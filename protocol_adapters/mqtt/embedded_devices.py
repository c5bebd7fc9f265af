"""The embedded broker's use of django_app devices: login, topic override, presence.

Django is imported on first use only: settings must be configured by then, not at import.
"""

from __future__ import annotations

import logging

__all__ = ["authenticate_device", "device_exists", "device_topics", "mark"]

logger = logging.getLogger("gateway.mqtt")


async def authenticate_device(device_id: str, password: str) -> str | None:
    """The id of the device these credentials belong to, or None."""
    if not device_id or not password:
        return None
    from django_app import devices

    device = await devices.authenticate(device_id, password)
    return device.device_id if device is not None else None


async def device_exists(device_id: str) -> bool:
    """Whether `device_id` names a device (its client id is then reserved to it)."""
    from django_app import devices

    return await devices.exists(device_id)


async def device_topics(device_id: str) -> list[str]:
    """The device's own topic filters, [] when it uses the adapter's ACL."""
    from django_app import devices

    return await devices.topics_for(device_id)


async def mark(device_id: str, *, online: bool) -> None:
    """Record a device as online or offline; a database error is logged, not raised."""
    from django_app import devices

    try:
        await (devices.mark_online if online else devices.mark_offline)(device_id)
    except Exception:
        logger.exception(
            "could not record device %r as %s", device_id, "online" if online else "offline"
        )
