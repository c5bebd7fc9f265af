"""`gateway.mqtt_requests.CommandStore` on the `DeviceCommand` model: the command history."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

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


@dataclass
class _Row:
    """A command first written in this batch: plain values, cheaper than a model instance."""

    change: CommandChange
    device: int
    status: str = Status.SENT
    answered_at: datetime | None = None
    response: bytes | None = None

    def values(self) -> tuple[Any, ...]:
        c, moment = self.change, connection.ops.adapt_datetimefield_value
        return (
            c.request_id,
            self.device,
            c.command,
            c.topic,
            c.payload,
            self.status,
            c.timeout,
            moment(c.at),
            moment(self.answered_at),
            self.response,
        )


def _new_rows(changes: Sequence[CommandChange]) -> dict[str, _Row]:
    """The batch's new commands (of known devices), to which the later changes apply."""
    sent = [c for c in changes if c.kind == "sent"]
    ids = {c.device_id for c in sent}
    devices = dict(Device.objects.filter(device_id__in=ids).values_list("device_id", "pk"))
    return {c.request_id: _Row(c, devices[c.device_id]) for c in sent if c.device_id in devices}


def _apply(rows: dict[str, _Row], change: CommandChange) -> bool:
    """One answer or timeout: on a row of this batch in memory, else an UPDATE; False: unknown."""
    row = rows.get(change.request_id)
    if row is not None:  # sent in this same batch: written once, already final
        if change.kind == "timed_out" and row.status == Status.SENT:
            row.status = Status.TIMED_OUT
        elif change.kind == "answered" and row.status in (Status.SENT, Status.TIMED_OUT):
            row.status = Status.ANSWERED if change.in_time else Status.ANSWERED_LATE
            row.response, row.answered_at = change.payload, change.at
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


def _insert(rows: list[_Row]) -> None:
    """One INSERT for many rows: bulk_create's work per object showed in the loop's latency."""
    if not rows:
        return
    table = connection.ops.quote_name(DeviceCommand._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(name) for name in _COLUMNS)
    marks = ", ".join(["%s"] * len(_COLUMNS))
    with connection.cursor() as cursor:
        sql = f"INSERT INTO {table} ({columns}) VALUES ({marks})"
        cursor.executemany(sql, [row.values() for row in rows])


class DatabaseCommandStore:
    """Keeps every command sent with `gateway.mqtt.request` as a `DeviceCommand` row."""

    async def record(self, changes: Sequence[CommandChange]) -> list[str]:
        return await _record(changes)
