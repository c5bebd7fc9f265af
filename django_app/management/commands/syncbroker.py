"""``manage.py syncbroker``: bring the external broker's access control in step with the devices."""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from django.core.management.base import BaseCommand, CommandError

from gateway import broker_access


class Command(BaseCommand):
    help = (
        "Bring every broker-access adapter of GATEWAY['ADAPTERS'] (Mosquitto dynamic security) "
        "in step with the devices, and report what changed."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        if not broker_access.syncers():
            raise CommandError("GATEWAY['ADAPTERS'] has no enabled broker-access adapter")
        try:
            reports = async_to_sync(broker_access.resync)()
        except OSError as exc:
            raise CommandError(str(exc)) from None
        for report in reports:
            self.stdout.write(f"{report.name}:")
            for line in report.lines():
                self.stdout.write(f"  {line}")
        if any(report.errors for report in reports):
            raise CommandError("some changes failed: see the errors above")
