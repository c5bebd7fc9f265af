"""Settings for django_view.py: one sync Django view reading a SQLite file.

``DJANGO_VIEW_DB`` names the file; ``DJANGO_VIEW_SYNC_THREADS`` is the gateway's
``GATEWAY["HTTP"]["SYNC_THREADS"]`` (``none`` for Django's own thread per request; unset for
the default); ``DJANGO_VIEW_KEEP`` keeps database connections (``CONN_MAX_AGE`` None).
"""

from __future__ import annotations

import os
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.urls import path

from benchmarks.settings import *  # noqa: F403

KEEP = "DJANGO_VIEW_KEEP" in os.environ  # CONN_MAX_AGE None instead of 0
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3",
                         "NAME": os.environ.get("DJANGO_VIEW_DB", ":memory:"),
                         "OPTIONS": {"transaction_mode": "IMMEDIATE",
                                     "init_command": "PRAGMA journal_mode=WAL"},
                         "CONN_MAX_AGE": None if KEEP else 0}}  # fmt: skip
ROOT_URLCONF = "benchmarks.django_view_settings"


def devices(request: HttpRequest) -> HttpResponse:
    from django_app.models.devices import Device

    return HttpResponse(f"{Device.objects.count()} devices")


urlpatterns = [path("devices/", devices)]

HTTP: dict[str, Any] = {"PORT": 0}
if "DJANGO_VIEW_SYNC_THREADS" in os.environ:
    threads = os.environ["DJANGO_VIEW_SYNC_THREADS"]
    HTTP["SYNC_THREADS"] = None if threads == "none" else int(threads)
GATEWAY = {"HTTP": HTTP}
