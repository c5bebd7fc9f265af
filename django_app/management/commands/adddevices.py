"""``manage.py adddevices``: create devices and their MQTT credentials, or reset a password."""

from __future__ import annotations

import argparse
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_slug
from django.db import transaction

from django_app.broker_access import set_password
from django_app.models import Device, DeviceCredential


class Command(BaseCommand):
    help = (
        "Create devices (or reset their password) so they can log in to the embedded broker, "
        "or to Mosquitto through a MosquittoDynsec adapter: give DEVICE_IDs, or --prefix P "
        "--count N for P-1 ... P-N."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("device_ids", nargs="*", metavar="DEVICE_ID")
        parser.add_argument("--prefix", help="generate ids PREFIX-1 ... PREFIX-COUNT")
        parser.add_argument("--count", type=int, default=0, help="how many ids to generate")
        parser.add_argument("--password", required=True, help="the devices' MQTT password")

    def handle(self, *args: Any, **options: Any) -> None:
        ids = list(options["device_ids"])
        if options["prefix"]:
            if options["count"] < 1:
                raise CommandError("--prefix needs --count of at least 1")
            ids += [f"{options['prefix']}-{n}" for n in range(1, options["count"] + 1)]
        if not ids:
            raise CommandError("give DEVICE_IDs, or --prefix and --count")
        for device_id in ids:
            try:
                validate_slug(device_id)
            except ValidationError:
                raise CommandError(
                    f"{device_id!r} is not a device id: use letters, digits, - and _"
                ) from None
        created = 0
        with transaction.atomic():
            for device_id in ids:
                device, new = Device.objects.get_or_create(device_id=device_id)
                credential = DeviceCredential.objects.filter(device=device).first()
                credential = credential or DeviceCredential(device=device)
                set_password(credential, options["password"])  # also reaches the broker
                credential.save()
                created += new
        self.stdout.write(f"{created} device(s) created, {len(ids)} password(s) set")
