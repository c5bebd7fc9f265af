"""``manage.py adddevices``: devices and credentials the embedded broker accepts."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from django_app.devices import _authenticate
from django_app.models import Device

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command("adddevices", *args, stdout=out)
    return out.getvalue()


def test_generated_devices_can_log_in_and_passwords_can_be_reset() -> None:
    assert run("--prefix", "load", "--count", "3", "--password", "first") == (
        "3 device(s) created, 3 password(s) set\n"
    )
    assert sorted(Device.objects.values_list("device_id", flat=True)) == [
        "load-1", "load-2", "load-3",
    ]  # fmt: skip
    assert _authenticate("load-2", "first") is not None
    assert run("load-2", "--password", "second") == "0 device(s) created, 1 password(s) set\n"
    assert _authenticate("load-2", "first") is None
    assert _authenticate("load-2", "second") is not None
    assert _authenticate("load-1", "first") is not None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--password", "x"], "give DEVICE_IDs"),
        (["--prefix", "p", "--password", "x"], "--count"),
        (["bad id", "--password", "x"], "is not a device id"),
    ],
)
def test_bad_arguments_are_refused_and_nothing_is_created(args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        run(*args)
    assert not Device.objects.exists()
