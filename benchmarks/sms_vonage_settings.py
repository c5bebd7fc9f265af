"""Benchmark settings for sms_vonage.py: the shared ones, the Vonage adapter, one Django view."""

from __future__ import annotations

from typing import Any

from django.urls import path

from benchmarks.settings import *  # noqa: F403
from benchmarks.sms_vonage import API_KEY, SECRET, vonage_view
from benchmarks.webhook_load import adapter_settings

ROOT_URLCONF = "benchmarks.sms_vonage_settings"
urlpatterns = [path("sms/vonage/", vonage_view)]
# Both stacks keep nothing: the view has no storage either.
GATEWAY: dict[str, Any] = adapter_settings(  # type: ignore[no-redef]
    "vonage",
    "protocol_adapters.vonage_sms.VonageSmsAdapter",
    {
        "API_KEY": API_KEY,
        "SIGNATURE_SECRET": SECRET,
        "SIGNATURE_METHOD": "sha256",
        "STORE": "memory",
    },
)
