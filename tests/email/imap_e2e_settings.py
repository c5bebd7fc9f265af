"""Settings for the IMAP end-to-end test: a file database and one IMAP account from the env."""

from __future__ import annotations

import os

from tests.settings import *  # noqa: F403

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("GATEWAY_IMAP_E2E_DB", ":memory:"),
    }
}
GATEWAY = {
    "SHUTDOWN_TIMEOUT": 3.0,
    "ADAPTERS": {
        "imap": {
            "BACKEND": "protocol_adapters.imap.ImapAdapter",
            "OPTIONS": {
                "ACCOUNTS": [
                    {
                        "HOST": "127.0.0.1",
                        "PORT": int(os.environ.get("GATEWAY_IMAP_E2E_PORT", "143")),
                        "SSL": False,
                        "USERNAME": "inbox@example.com",
                        "PASSWORD": os.environ.get("GATEWAY_IMAP_E2E_PASSWORD", ""),
                        "IDLE_TIMEOUT": 5.0,
                        "TIMEOUT": 5.0,
                    }
                ],
                "RECONNECT": {"INITIAL": 0.1, "MAX": 1.0},
            },
        },
    },
}
