"""Benchmark settings for sms_webhook.py: the shared ones, the Twilio adapter, one Django view."""

from __future__ import annotations

from typing import Any

from django.urls import path

from benchmarks.settings import *  # noqa: F403
from benchmarks.sms_webhook import TOKEN, twilio_view

ROOT_URLCONF = "benchmarks.sms_settings"
urlpatterns = [path("sms/twilio/", twilio_view)]
GATEWAY: dict[str, Any] = {  # type: ignore[no-redef]
    "HTTP": {"PORT": 0},
    "ADAPTERS": {
        "sms": {
            "BACKEND": "protocol_adapters.twilio_sms.TwilioSmsAdapter",
            # Both stacks keep nothing: the view has no storage either.
            "OPTIONS": {"AUTH_TOKEN": TOKEN, "STORE": "memory"},
        }
    },
}
