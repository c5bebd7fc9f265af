"""`gateway.mqtt_requests.CommandStore` on the `DeviceCommand` model: the command history."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from django.db import connection, transaction

from django_app.models.commands import DeviceCommand
from django_app.models.devices import Device
from gateway.db import database_sync_to_async
from gateway.mqtt_requests import CommandChange

__all__ = ["DatabaseCommandStore"]

Status = DeviceCommand.Status
# Not thread-sensitive: a sync view calling gateway.mqtt.request() in the gateway's own
# process holds Django's one sync thread until the answer comes; the history is written
# meanwhile, so it must not queue behind that view.
_in_pool = partial(database_sync_to_async, thread_sensitive=False)


def _answered(command: DeviceCommand, change: CommandChange) -> None:
    command.status = Status.ANSWERED if change.in_time else Status.ANSWERED_LATE
    command.response = change.payload
    command.answered_at = change.at


def _new_rows(changes: Sequence[CommandChange]) -> dict[str, DeviceCommand]:
    """The batch's new commands, with the changes that followed them in the batch applied."""
    sent = [c for c in changes if c.kind == "sent"]
    ids = {c.device_id for c in sent}
    devices = dict(Device.objects.filter(device_id__in=ids).values_list("device_id", "pk"))
    return {
        c.request_id: DeviceCommand(
            request_id=c.request_id,
            device_id=devices[c.device_id],
            command=c.command,
            topic=c.topic,
            payload=c.payload,
            timeout=c.timeout,
            sent_at=c.at,
        )
        for c in sent
        if c.device_id in devices
    }


def _apply(rows: dict[str, DeviceCommand], change: CommandChange) -> bool:
    """One answer or timeout: on a row of this batch in memory, else an UPDATE; False: unknown."""
    row = rows.get(change.request_id)
    if row is not None:  # sent in this same batch: written once, already final
        if change.kind == "timed_out" and row.status == Status.SENT:
            row.status = Status.TIMED_OUT
        elif change.kind == "answered" and row.status in (Status.SENT, Status.TIMED_OUT):
            _answered(row, change)
        return True
    commands = DeviceCommand.objects.filter(request_id=change.request_id)
    if change.kind == "timed_out":
        commands.filter(status=Status.SENT).update(status=Status.TIMED_OUT)
        return True
    answered = {"response": change.payload, "answered_at": change.at}
    if change.in_time:
        changed = commands.filter(status=Status.SENT).update(status=Status.ANSWERED, **answered)
    else:
        # Late: after the timeout, or after a gateway restart lost the waiting caller.
        late = commands.filter(status__in=[Status.SENT, Status.TIMED_OUT])
        changed = late.update(status=Status.ANSWERED_LATE, **answered)
    return bool(changed) or commands.exists()  # a duplicate answer changes nothing


@_in_pool
def _record(changes: Sequence[CommandChange]) -> list[str]:
    unknown = []
    with transaction.atomic():
        rows = _new_rows(changes)
        for change in changes:
            if change.kind != "sent" and not _apply(rows, change):
                unknown.append(change.request_id)
        _insert(list(rows.values()))
    return unknown


_COLUMNS = (
    "request_id",
    "device_id",
    "command",
    "topic",
    "payload",
    "status",
    "timeout",
    "sent_at",
    "answered_at",
    "response",
)


def _insert(rows: list[DeviceCommand]) -> None:
    """One multi-row INSERT: bulk_create's per-object work showed in the loop's latency."""
    if not rows:
        return
    table = connection.ops.quote_name(DeviceCommand._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(name) for name in _COLUMNS)
    marks = ", ".join(["%s"] * len(_COLUMNS))
    moment = connection.ops.adapt_datetimefield_value
    params = [
        (
            row.request_id,
            row.device_id,
            row.command,
            row.topic,
            bytes(row.payload),
            row.status,
            row.timeout,
            moment(row.sent_at),
            moment(row.answered_at),
            None if row.response is None else bytes(row.response),
        )
        for row in rows
    ]
    with connection.cursor() as cursor:
        cursor.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", params)


class DatabaseCommandStore:
    """Keeps every command sent with `gateway.mqtt.request` as a `DeviceCommand` row."""

    async def record(self, changes: Sequence[CommandChange]) -> list[str]:
        return await _record(changes)
