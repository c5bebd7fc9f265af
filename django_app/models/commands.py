"""Commands sent to devices through `gateway.mqtt.request`, and what became of each."""

from __future__ import annotations

from django.db import models

from django_app.models.devices import Device

__all__ = ["DeviceCommand"]


class DeviceCommand(models.Model):
    """One command for one device: sent, then answered, timed out, or answered late."""

    class Status(models.TextChoices):
        SENT = "sent", "sent"
        ANSWERED = "answered", "answered"
        TIMED_OUT = "timed_out", "timed out"
        ANSWERED_LATE = "answered_late", "answered late"

    request_id = models.CharField(max_length=64, unique=True, help_text="The correlation id.")
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="commands")
    command = models.CharField(max_length=200)
    topic = models.TextField(help_text="The topic the command was published to.")
    payload = models.BinaryField(blank=True, default=b"")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.SENT)
    timeout = models.FloatField(help_text="Seconds the sender waited for the answer.")
    sent_at = models.DateTimeField()
    answered_at = models.DateTimeField(null=True, blank=True)
    response = models.BinaryField(null=True, blank=True)

    class Meta:
        app_label = "gateway"
        ordering = ["-sent_at"]
        indexes = [models.Index(fields=["device", "-sent_at"])]

    def __str__(self) -> str:
        return f"{self.command} to {self.device} ({self.get_status_display()})"
