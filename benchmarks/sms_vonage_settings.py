"""Benchmark settings for sms_vonage.py: the shared ones, the Vonage adapter, one Django view."""

from __future__ import annotations

from typing import Any

from django.urls import path

from benchmarks.settings import *  # noqa: F403
from benchmarks.sms_vonage import API_KEY, SECRET, vonage_view

ROOT_URLCONF = "benchmarks.sms_vonage_settings"
urlpatterns = [path("sms/vonage/", vonage_view)]
GATEWAY: dict[str, Any] = {  # type: ignore[no-redef]
    "HTTP": {"PORT": 0},
    "ADAPTERS": {
        "vonage": {
            "BACKEND": "protocol_adapters.vonage_sms.VonageSmsAdapter",
            # Both stacks keep nothing: the view has no storage either.
            "OPTIONS": {
                "API_KEY": API_KEY,
                "SIGNATURE_SECRET": SECRET,
                "SIGNATURE_METHOD": "sha256",
                "STORE": "memory",
            },
        }
    },
}
