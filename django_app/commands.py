"""`gateway.mqtt_requests.CommandStore` on the `DeviceCommand` model: the command history."""

from __future__ import annotations

from functools import partial

from django.utils import timezone

from django_app.models.commands import DeviceCommand
from django_app.models.devices import Device
from gateway.db import database_sync_to_async

__all__ = ["DatabaseCommandStore"]

Status = DeviceCommand.Status
# Not thread-sensitive: a sync view calling gateway.mqtt.request() in the gateway's own
# process holds Django's one sync thread until the answer comes; the history is written
# meanwhile, so it must not queue behind that view.
_in_pool = partial(database_sync_to_async, thread_sensitive=False)


@_in_pool
def _record_sent(
    request_id: str, device_id: str, command: str, topic: str, payload: bytes, timeout: float
) -> bool:
    device = Device.objects.filter(device_id=device_id).first()
    if device is None:
        return False
    DeviceCommand.objects.create(
        request_id=request_id,
        device=device,
        command=command,
        topic=topic,
        payload=payload,
        timeout=timeout,
        sent_at=timezone.now(),
    )
    return True


@_in_pool
def _record_answer(request_id: str, payload: bytes, in_time: bool) -> bool:
    commands = DeviceCommand.objects.filter(request_id=request_id)
    now = timezone.now()
    if in_time:
        changed = commands.filter(status=Status.SENT).update(
            status=Status.ANSWERED, response=payload, answered_at=now
        )
    else:
        # Late: after the timeout, or after a gateway restart lost the waiting caller. A
        # command still "sent" had no timeout recorded yet: its caller is gone all the same.
        changed = commands.filter(status__in=[Status.SENT, Status.TIMED_OUT]).update(
            status=Status.ANSWERED_LATE, response=payload, answered_at=now
        )
    return bool(changed) or commands.exists()  # a duplicate answer changes nothing


@_in_pool
def _record_timeout(request_id: str) -> None:
    DeviceCommand.objects.filter(request_id=request_id, status=Status.SENT).update(
        status=Status.TIMED_OUT
    )


class DatabaseCommandStore:
    """Keeps every command sent with `gateway.mqtt.request` as a `DeviceCommand` row."""

    async def record_sent(
        self,
        request_id: str,
        device_id: str,
        command: str,
        topic: str,
        payload: bytes,
        timeout: float,
    ) -> bool:
        return await _record_sent(request_id, device_id, command, topic, payload, timeout)

    async def record_answer(self, request_id: str, payload: bytes, *, in_time: bool) -> bool:
        return await _record_answer(request_id, payload, in_time)

    async def record_timeout(self, request_id: str) -> None:
        await _record_timeout(request_id)
