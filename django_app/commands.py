"""`gateway.mqtt_requests.CommandStore` on the `DeviceCommand` model: the command history.

The history is written by one thread of its own, on one database connection it keeps between
batches, with plain SQL: one multi-row INSERT of the batch's commands in their final state,
and an UPDATE only for a command recorded in an earlier batch. Its Python work holds the GIL
that the event loop needs for every round trip, so it is kept to a few microseconds a change
(no model instance, no queryset, no new connection per batch: cProfile figures in
benchmarks/README.md, *Commands that wait for the device*).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from django.db import DatabaseError, IntegrityError, connection, transaction

from django_app.models.commands import DeviceCommand
from django_app.models.devices import Device
from gateway.mqtt_requests import CommandChange

__all__ = ["DatabaseCommandStore"]

Status = DeviceCommand.Status
_SENT, _TIMED_OUT = str(Status.SENT), str(Status.TIMED_OUT)
_ANSWERED, _ANSWERED_LATE = str(Status.ANSWERED), str(Status.ANSWERED_LATE)
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
_STATUS, _ANSWERED_AT, _RESPONSE = 5, 8, 9  # positions in a row of _COLUMNS
_ROWS_PER_INSERT = 100
"""Rows of one INSERT statement (1,000 parameters). ``executemany`` runs a statement per row,
and SQLite's driver takes the GIL back from the event loop after each one: a batch of 500
commands made 500 hand-overs (py-spy, r2000: ``executemany`` was 395 of the writer's 504
samples); one statement per 100 rows makes five."""
_YIELD_EVERY = 32
"""Changes handled between two releases of the GIL: the event loop waits for one stretch at
most, instead of the interpreter's switch interval (5 ms)."""


class DatabaseCommandStore:
    """Keeps every command sent with `gateway.mqtt.request` as a `DeviceCommand` row."""

    def __init__(self) -> None:
        # One thread: the batches are written in order, on the connection it keeps; not
        # Django's sync thread, which a sync view waiting in gateway.mqtt.request() may hold.
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="gateway-command-history")
        self._devices: dict[str, int] = {}
        """Device ids seen in "sent" changes and their primary keys."""

    async def record(self, changes: Sequence[CommandChange]) -> list[str]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self._record, list(changes))

    async def aclose(self) -> None:
        """Close the writer's database connection and let its thread end."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._thread, _close_connection)
        self._thread.shutdown(wait=False)

    def _record(self, changes: list[CommandChange]) -> list[str]:
        try:
            return self._write(changes)
        except IntegrityError:  # a device deleted since its key was kept: look them up again
            self._devices.clear()
        except DatabaseError:  # a connection the server dropped, a locked database
            connection.close()
        return self._write(changes)  # once more, then the caller logs the failure

    def _write(self, changes: list[CommandChange]) -> list[str]:
        rows, earlier = self._rows(changes)
        with transaction.atomic(), connection.cursor() as cursor:
            unknown = [c.request_id for c in earlier if not _update(cursor, c)]
            for start in range(0, len(rows), _ROWS_PER_INSERT):
                chunk = rows[start : start + _ROWS_PER_INSERT]
                cursor.execute(_insert_sql(len(chunk)), [value for row in chunk for value in row])
        return unknown

    def _rows(self, changes: list[CommandChange]) -> tuple[list[list[Any]], list[CommandChange]]:
        """The batch's commands in their final state; the changes to commands of earlier ones.

        A command of an unknown device is not kept, so its answer is an unknown one later.
        """
        devices = self._device_keys(c.device_id for c in changes if c.kind == "sent")
        moment = _moment()
        rows: dict[str, list[Any]] = {}
        earlier: list[CommandChange] = []
        for n, c in enumerate(changes, 1):
            if n % _YIELD_EVERY == 0:
                time.sleep(0)
            if c.kind == "sent":
                device = devices.get(c.device_id)
                if device is not None:
                    at = moment(c.at)
                    row = [c.request_id, device, c.command, c.topic, c.payload, _SENT, c.timeout]
                    rows[c.request_id] = [*row, at, None, None]
            elif (row_ := rows.get(c.request_id)) is None:
                earlier.append(c)
            elif c.kind == "timed_out":
                if row_[_STATUS] == _SENT:
                    row_[_STATUS] = _TIMED_OUT
            elif row_[_STATUS] in (_SENT, _TIMED_OUT):
                row_[_STATUS] = _ANSWERED if c.in_time else _ANSWERED_LATE
                row_[_ANSWERED_AT], row_[_RESPONSE] = moment(c.at), c.payload
        return list(rows.values()), earlier

    def _device_keys(self, device_ids: Iterable[str]) -> dict[str, int]:
        missing = set(device_ids).difference(self._devices)
        if missing:
            found = Device.objects.filter(device_id__in=missing).values_list("device_id", "pk")
            self._devices.update(found)
        return self._devices


def _moment() -> Callable[[datetime], Any]:
    """The connection's datetime adapter; for UTC times a shortcut when it gives the same."""
    adapt = connection.ops.adapt_datetimefield_value
    probe = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    if adapt(probe) != str(probe.replace(tzinfo=None)):  # not SQLite's text in UTC
        return adapt

    def moment(at: datetime) -> Any:
        # Django's own steps (make_naive, checks) cost more than the rest of a change.
        return str(at.replace(tzinfo=None)) if at.tzinfo is UTC else adapt(at)

    return moment


def _close_connection() -> None:
    connection.close()  # looked up here: the proxy gives the calling thread's connection


def _table() -> str:
    return connection.ops.quote_name(DeviceCommand._meta.db_table)


def _insert_sql(count: int) -> str:
    """An INSERT of `count` rows of _COLUMNS."""
    columns = ", ".join(connection.ops.quote_name(name) for name in _COLUMNS)
    marks = "(" + ", ".join(["%s"] * len(_COLUMNS)) + ")"
    return f"INSERT INTO {_table()} ({columns}) VALUES {', '.join([marks] * count)}"


def _update(cursor: Any, change: CommandChange) -> bool:
    """An answer or a timeout to a command of an earlier batch; False: no such command."""
    where = "WHERE request_id = %s AND status IN (%s, %s)"
    if change.kind == "timed_out":
        cursor.execute(
            f"UPDATE {_table()} SET status = %s {where}",
            [_TIMED_OUT, change.request_id, _SENT, _SENT],
        )
        return True
    # Late: after the timeout, or after a gateway restart lost the waiting caller.
    status, before = (_ANSWERED, _SENT) if change.in_time else (_ANSWERED_LATE, _TIMED_OUT)
    at = _moment()(change.at)
    cursor.execute(
        f"UPDATE {_table()} SET status = %s, response = %s, answered_at = %s {where}",
        [status, change.payload, at, change.request_id, _SENT, before],
    )
    if cursor.rowcount:
        return True
    cursor.execute(f"SELECT 1 FROM {_table()} WHERE request_id = %s", [change.request_id])
    return cursor.fetchone() is not None  # a duplicate answer changes nothing
