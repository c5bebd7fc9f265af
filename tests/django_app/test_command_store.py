"""The command history's store: batches of changes, in order, written once where it can."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from asgiref.sync import async_to_sync

from django_app.commands import DatabaseCommandStore
from django_app.models.commands import DeviceCommand
from django_app.models.devices import Device
from gateway.mqtt_requests import CommandChange

pytestmark = pytest.mark.django_db(transaction=True)

T0 = datetime(2026, 12, 3, 7, 0, tzinfo=UTC)


def sent(request_id: str, device_id: str = "pump-7") -> CommandChange:
    return CommandChange(
        "sent", request_id, T0, device_id=device_id, command="reboot", topic="t", payload=b"go",
        timeout=1.0,
    )  # fmt: skip


def answered(request_id: str, in_time: bool = True, seconds: int = 1) -> CommandChange:
    at = T0 + timedelta(seconds=seconds)
    return CommandChange("answered", request_id, at, payload=b"ok", in_time=in_time)


def timed_out(request_id: str) -> CommandChange:
    return CommandChange("timed_out", request_id, T0 + timedelta(seconds=1))


def record(*changes: CommandChange) -> list[str]:
    return async_to_sync(DatabaseCommandStore().record)(changes)


def status(request_id: str) -> tuple[str, bytes | None]:
    row = DeviceCommand.objects.get(request_id=request_id)
    return row.status, None if row.response is None else bytes(row.response)


def test_changes_in_one_batch_and_across_batches_end_in_the_same_state() -> None:
    Device.objects.create(device_id="pump-7")
    unknown = record(
        sent("a"), answered("a"),  # answered within the batch: one INSERT, final
        sent("b"), timed_out("b"), answered("b", in_time=False, seconds=3),  # late, same batch
        sent("c"), sent("d"), sent("e", device_id="nobody"),
    )  # fmt: skip
    assert unknown == []
    assert record(answered("c"), timed_out("d"), answered("e"), answered("zz")) == ["e", "zz"]
    assert record(answered("d", in_time=False), answered("a")) == []  # a duplicate: no change
    assert status("a") == ("answered", b"ok")
    assert status("b") == ("answered_late", b"ok")
    assert status("c") == ("answered", b"ok")
    assert status("d") == ("answered_late", b"ok")
    assert not DeviceCommand.objects.filter(request_id="e").exists()
    row = DeviceCommand.objects.get(request_id="b")
    assert (row.sent_at, row.answered_at) == (T0, T0 + timedelta(seconds=3))
    assert (bytes(row.payload), row.command, row.timeout) == (b"go", "reboot", 1.0)


def test_a_device_deleted_after_its_key_was_kept_loses_no_later_command() -> None:
    store = DatabaseCommandStore()
    first = Device.objects.create(device_id="pump-7")
    assert async_to_sync(store.record)([sent("a")]) == []
    first.delete()  # the store still holds its primary key
    assert async_to_sync(store.record)([sent("b"), answered("b")]) == ["b"]  # no device: unknown
    second = Device.objects.create(device_id="pump-7")
    assert async_to_sync(store.record)([sent("c")]) == []
    assert DeviceCommand.objects.get(request_id="c").device_id == second.pk
    async_to_sync(store.aclose)()


def test_one_batch_of_many_commands_is_final_in_one_call() -> None:
    Device.objects.create(device_id="pump-7")
    changes = [c for n in range(1000) for c in (sent(f"r{n}"), answered(f"r{n}"))]
    assert record(*changes[:1500]) == []
    assert record(*changes[1500:]) == []
    assert DeviceCommand.objects.filter(status="answered").count() == 1000
