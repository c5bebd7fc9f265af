"""Settings for intake_flood.py: every intake in one `gateway run`, on one SQLite file.

``INTAKE_FLOOD_MODE`` ``capped`` keeps the adapters' caps at their defaults; ``open`` lifts
them (``INTAKE``, ``MAX_CONNECTIONS``, ``LOGINS`` and the mail webhook's ``MAX_IN_FLIGHT``
so large that nothing is refused), as the intakes were before the caps. ``/ping/`` is a
Django view that reads the database, as a dashboard's request does.
"""

from __future__ import annotations

import os
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.urls import path

from benchmarks.intake_clients import MAIL_SIGNING_KEY, SMS_TOKEN
from benchmarks.settings import *  # noqa: F403

MODE = os.environ.get("INTAKE_FLOOD_MODE", "capped")
# As docs/settings.md advises for SQLite: the two gateways and their threads write one file.
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3",
                         "NAME": os.environ.get("INTAKE_FLOOD_DB", ":memory:"),
                         "OPTIONS": {"transaction_mode": "IMMEDIATE",
                                     "init_command": "PRAGMA journal_mode=WAL; "
                                                     "PRAGMA synchronous=NORMAL"}}}  # fmt: skip
ROOT_URLCONF = "benchmarks.intake_flood_settings"
OPEN = 10**6
OPEN_INTAKE = {"CONCURRENCY": OPEN, "MAX_WAITING": OPEN}
OPEN_GATE = {"CONCURRENCY": 8, "MAX_WAITING": OPEN, "MAX_PER_ADDRESS": OPEN, "MAX_FAILURES": OPEN}


def ping(request: HttpRequest) -> HttpResponse:
    from django_app.models.devices import Device

    return HttpResponse(f"{Device.objects.count()} devices")


urlpatterns = [path("ping/", ping)]

mqtt: dict[str, Any] = {"PORT": int(os.environ.get("INTAKE_FLOOD_MQTT_PORT", "0"))}
sms: dict[str, Any] = {"AUTH_TOKEN": SMS_TOKEN}
mail: dict[str, Any] = {"PROVIDER": "mailgun", "SIGNING_KEY": MAIL_SIGNING_KEY}
smtp: dict[str, Any] = {"PORT": int(os.environ.get("INTAKE_FLOOD_SMTP_PORT", "0"))}
if MODE == "open":
    mqtt["LOGINS"] = OPEN_GATE
    sms["INTAKE"] = mail["INTAKE"] = OPEN_INTAKE
    mail["MAX_IN_FLIGHT"] = OPEN  # before the caps a full dispatcher was waited for
    smtp["MAX_CONNECTIONS"] = OPEN
# open: Django's own thread per request, as before SYNC_THREADS; capped: the default, or
# INTAKE_FLOOD_SYNC_THREADS to try another bound.
HTTP_THREADS: dict[str, Any] = {"SYNC_THREADS": None} if MODE == "open" else {}
if MODE != "open" and "INTAKE_FLOOD_SYNC_THREADS" in os.environ:
    HTTP_THREADS["SYNC_THREADS"] = int(os.environ["INTAKE_FLOOD_SYNC_THREADS"])
if MODE != "open" and "INTAKE_FLOOD_SYNC_THREADS_BUSY" in os.environ:  # "none" turns it off
    busy = os.environ["INTAKE_FLOOD_SYNC_THREADS_BUSY"]
    HTTP_THREADS["SYNC_THREADS_BUSY"] = None if busy == "none" else int(busy)
SWITCH: dict[str, Any] = {}
if "INTAKE_FLOOD_SWITCH_INTERVAL" in os.environ:  # to try another than the default
    SWITCH["SWITCH_INTERVAL"] = float(os.environ["INTAKE_FLOOD_SWITCH_INTERVAL"])
if "INTAKE_FLOOD_LOOP_SHARE" in os.environ:
    SWITCH["LOOP_SHARE"] = float(os.environ["INTAKE_FLOOD_LOOP_SHARE"])
GATEWAY: dict[str, Any] = SWITCH | {  # type: ignore[no-redef]
    "HTTP": {"PORT": 0} | HTTP_THREADS,
    "ADAPTERS": {
        "mqtt": {"BACKEND": "protocol_adapters.mqtt.EmbeddedBroker", "OPTIONS": mqtt},
        "sms": {"BACKEND": "protocol_adapters.twilio_sms.TwilioSmsAdapter", "OPTIONS": sms},
        "mail": {"BACKEND": "protocol_adapters.email_webhooks.EmailWebhookAdapter",
                 "OPTIONS": mail},
        "smtp": {"BACKEND": "protocol_adapters.smtp.SMTPAdapter", "OPTIONS": smtp},
    },
}  # fmt: skip
