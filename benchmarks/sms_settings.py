"""Benchmark settings for sms_webhook.py: the shared ones, the Twilio adapter, one Django view."""

from __future__ import annotations

from typing import Any

from django.urls import path

from benchmarks.settings import *  # noqa: F403
from benchmarks.sms_webhook import TOKEN, twilio_view
from benchmarks.webhook_load import adapter_settings

ROOT_URLCONF = "benchmarks.sms_settings"
urlpatterns = [path("sms/twilio/", twilio_view)]
# Both stacks keep nothing: the view has no storage either.
GATEWAY: dict[str, Any] = adapter_settings(  # type: ignore[no-redef]
    "sms", "protocol_adapters.twilio_sms.TwilioSmsAdapter", {"AUTH_TOKEN": TOKEN, "STORE": "memory"}
)
