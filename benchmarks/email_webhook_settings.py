"""Benchmark settings for email_webhook.py: the shared ones, the adapter, anymail's view."""

from __future__ import annotations

import os
from typing import Any

from anymail.webhooks.mailgun import MailgunInboundWebhookView
from django.urls import path

from benchmarks.settings import *  # noqa: F403
from benchmarks.webhook_load import adapter_settings

SIGNING_KEY = "benchmark-signing-key"

ROOT_URLCONF = "benchmarks.email_webhook_settings"
urlpatterns = [path("email/mailgun/", MailgunInboundWebhookView.as_view())]
ANYMAIL = {"MAILGUN_WEBHOOK_SIGNING_KEY": SIGNING_KEY}
# Both stacks keep nothing: anymail's view has no storage either.
GATEWAY: dict[str, Any] = adapter_settings(  # type: ignore[no-redef]
    "mailgun",
    "protocol_adapters.email_webhooks.EmailWebhookAdapter",
    {"PROVIDER": "mailgun", "SIGNING_KEY": SIGNING_KEY, "STORE": False},
)
if "EMAIL_WEBHOOK_LOOP_SHARE" in os.environ:  # GATEWAY["LOOP_SHARE"], to try another
    GATEWAY["LOOP_SHARE"] = float(os.environ["EMAIL_WEBHOOK_LOOP_SHARE"])
