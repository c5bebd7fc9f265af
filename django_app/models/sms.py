"""Text messages in and out (`SmsMessage`), opt-outs (`SmsOptOut`), and the database store."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, models, transaction

from gateway.db import database_sync_to_async
from gateway.sms import SmsRecord, now, opt_out_key, status_moves_forward


class SmsMessage(models.Model):
    """One SMS, MMS or WhatsApp message received or sent through the provider."""

    class Direction(models.TextChoices):
        INBOUND = "inbound", "inbound"
        OUTBOUND = "outbound", "outbound"

    direction = models.CharField(max_length=8, choices=Direction.choices)
    sid = models.CharField("provider message id", max_length=64, unique=True)
    from_number = models.CharField("from", max_length=64, db_index=True)
    to_number = models.CharField("to", max_length=64, db_index=True)
    body = models.TextField(blank=True)
    status = models.CharField(max_length=16)
    media = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    status_at = models.DateTimeField("status changed at", default=now)

    class Meta:
        app_label = "gateway"
        ordering = ["-created_at"]
        verbose_name = "SMS message"

    def __str__(self) -> str:
        arrow = "<-" if self.direction == self.Direction.INBOUND else "->"
        return f"{self.to_number} {arrow} {self.from_number}: {self.body[:40]}"


class SmsOptOut(models.Model):
    """A number that sent STOP: nothing is sent to it until it sends START."""

    number = models.CharField(max_length=64, unique=True)
    opted_out_at = models.DateTimeField(default=now)

    class Meta:
        app_label = "gateway"
        verbose_name = "SMS opt-out"

    def __str__(self) -> str:
        return self.number


def _record(record: SmsRecord) -> bool:
    fields: dict[str, Any] = {
        "direction": record.direction,
        "from_number": record.from_number,
        "to_number": record.to_number,
        "body": record.body.replace("\x00", "\ufffd"),  # PostgreSQL's text refuses NUL
        "status": record.status,
        "media": list(record.media),
        "error": record.error,
    }
    try:
        with transaction.atomic():
            _, created = SmsMessage.objects.get_or_create(sid=record.sid, defaults=fields)
    except IntegrityError:
        return False  # a concurrent insert of the same sid won
    return created


def _mark_failed(sid: str, error: str) -> None:
    SmsMessage.objects.filter(sid=sid).update(
        status="failed", error=error, status_at=now(), updated_at=now()
    )


def _update_status(sid: str, status: str, error: str) -> bool:
    with transaction.atomic():
        message = SmsMessage.objects.select_for_update().filter(sid=sid).first()
        if message is None or not status_moves_forward(message.status, status):
            return False
        message.status = status
        message.status_at = now()
        message.error = error or message.error
        message.save(update_fields=["status", "status_at", "error", "updated_at"])
    return True


def _set_opted_out(number: str, opted_out: bool) -> None:
    key = opt_out_key(number)
    if opted_out:
        SmsOptOut.objects.update_or_create(number=key, defaults={"opted_out_at": now()})
    else:
        SmsOptOut.objects.filter(number=key).delete()


def _is_opted_out(number: str) -> bool:
    return SmsOptOut.objects.filter(number=opt_out_key(number)).exists()


class DatabaseSmsStore:
    """The default SMS store: `SmsMessage` and `SmsOptOut` rows (see gateway.sms.SmsStore)."""

    async def record(self, record: SmsRecord) -> bool:
        return await database_sync_to_async(_record)(record)

    async def mark_failed(self, sid: str, error: str) -> None:
        await database_sync_to_async(_mark_failed)(sid, error)

    async def update_status(self, sid: str, status: str, error: str = "") -> bool:
        return await database_sync_to_async(_update_status)(sid, status, error)

    async def set_opted_out(self, number: str, opted_out: bool) -> None:
        await database_sync_to_async(_set_opted_out)(number, opted_out)

    async def is_opted_out(self, number: str) -> bool:
        return await database_sync_to_async(_is_opted_out)(number)
