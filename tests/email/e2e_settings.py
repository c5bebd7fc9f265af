"""Settings for `gateway run` with the SMTP adapter: a file database the test prepared."""

from __future__ import annotations

import os

from tests.settings import *  # noqa: F403

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("GATEWAY_EMAIL_DB", ":memory:"),
    }
}
EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
EMAIL_FILE_PATH = os.environ.get("GATEWAY_EMAIL_OUTBOX", "/tmp")
GATEWAY = {
    "HTTP": {"ENABLED": False},
    "SHUTDOWN_TIMEOUT": 3.0,
    "ADAPTERS": {
        "mx": {
            "BACKEND": "protocol_adapters.smtp.SMTPAdapter",
            "OPTIONS": {"PORT": 0, "HOSTNAME": "mx.example.com"},
        },
    },
}
