"""`InboundEmail`: every message the email adapters took in, kept byte for byte, for dedup."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class InboundEmail(models.Model):
    """One inbound message for one recipient, and how its handling went."""

    class Status(models.TextChoices):
        RECEIVED = "received", "received"
        HANDLED = "handled", "handled"
        FAILED = "failed", "failed"
        REJECTED = "rejected", "rejected"

    message_id = models.CharField(max_length=255, blank=True, db_index=True)
    raw_sha256 = models.CharField("SHA-256 of the raw bytes", max_length=64)
    raw = models.BinaryField("raw message")
    size = models.PositiveIntegerField(default=0)
    sender = models.CharField("envelope sender", max_length=320, blank=True)
    recipient = models.CharField(max_length=320)
    subject = models.CharField(max_length=255, blank=True)
    # "smtp", "imap", or the mail provider whose inbound webhook posted it ("postmark", ...).
    source = models.CharField(max_length=32)
    adapter = models.CharField(max_length=100, blank=True)
    mailbox = models.CharField(max_length=255, blank=True)
    uid = models.PositiveBigIntegerField(null=True, blank=True)
    status = models.CharField(
        max_length=8, choices=Status.choices, default=Status.RECEIVED, db_index=True
    )
    attempts = models.PositiveIntegerField(default=1)
    error = models.TextField(blank=True)
    received_at = models.DateTimeField(default=timezone.now, db_index=True)
    handled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        app_label = "gateway"
        verbose_name = "inbound email"
        ordering = ("-received_at",)
        constraints = (
            models.UniqueConstraint(
                fields=("raw_sha256", "message_id", "recipient"),  # the hash leads: selective
                name="gateway_inboundemail_dedup",
            ),
        )

    def __str__(self) -> str:
        return f"{self.subject or '(no subject)'} -> {self.recipient} [{self.status}]"
