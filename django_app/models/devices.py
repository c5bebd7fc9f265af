"""Devices that talk MQTT to the embedded broker, and the credentials they log in with."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.hashers import check_password, make_password
from django.db import models
from django.utils import timezone

__all__ = ["Device", "DeviceCredential"]


class Device(models.Model):
    """One device: its MQTT identity, presence and last reported state."""

    device_id = models.SlugField(
        max_length=64,
        unique=True,
        help_text="The MQTT username the device logs in with; its topics are devices/<id>/...",
    )
    name = models.CharField(max_length=200, blank=True)
    online = models.BooleanField(default=False)
    last_seen = models.DateTimeField(null=True, blank=True)
    state: models.JSONField[Any, Any] = models.JSONField(default=dict, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        app_label = "gateway"
        ordering = ["device_id"]

    def __str__(self) -> str:
        return self.name or self.device_id


class DeviceCredential(models.Model):
    """A device's password (hashed with Django's password hashers) and optional topic override."""

    device = models.OneToOneField(Device, on_delete=models.CASCADE, related_name="credential")
    password = models.CharField(max_length=256)
    topics: models.JSONField[Any, Any] = models.JSONField(
        default=list,
        blank=True,
        help_text=(
            "Topic filters this device may publish and subscribe to, with {device_id} "
            "standing for its id; empty for the broker's default (devices/{device_id}/#)."
        ),
    )
    created = models.DateTimeField(auto_now_add=True)
    rotated = models.DateTimeField(null=True, blank=True)

    class Meta:
        app_label = "gateway"

    def __str__(self) -> str:
        return f"credential of {self.device}"

    def set_password(self, raw_password: str) -> None:
        """Hash and keep a new password; marks the credential as rotated."""
        self.password = make_password(raw_password)
        self.rotated = timezone.now()

    def check_password(self, raw_password: str) -> bool:
        """Whether `raw_password` is this device's password."""
        return check_password(raw_password, self.password)
