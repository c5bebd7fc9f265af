"""Settings for login_flood.py: the embedded broker (device logins) and the Twilio webhook
(messages kept in the database), on one SQLite file. ``LOGIN_FLOOD_MODE`` picks the login path:
``before`` hashes on the database thread with no gate, as before the hashing pool; ``after``
is the gateway's default."""

from __future__ import annotations

import os
from typing import Any

from benchmarks.settings import *  # noqa: F403

MODE = os.environ.get("LOGIN_FLOOD_MODE", "after")
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3",
                         "NAME": os.environ.get("LOGIN_FLOOD_DB", ":memory:")}}  # fmt: skip
OPEN_GATE = {"CONCURRENCY": 8, "MAX_WAITING": 10**6, "MAX_PER_ADDRESS": 10**6,
             "MAX_FAILURES": 10**6}  # fmt: skip
MQTT_OPTIONS: dict[str, Any] = {"PORT": int(os.environ.get("LOGIN_FLOOD_MQTT_PORT", "1883"))}
if MODE == "before":
    MQTT_OPTIONS["DEVICE_STORE"] = "benchmarks.login_flood_store.DatabaseThreadStore"
    MQTT_OPTIONS["LOGINS"] = OPEN_GATE
GATEWAY: dict[str, Any] = {  # type: ignore[no-redef]
    "HTTP": {"PORT": 0},
    "ADAPTERS": {
        "mqtt": {"BACKEND": "protocol_adapters.mqtt.EmbeddedBroker", "OPTIONS": MQTT_OPTIONS},
        "sms": {
            "BACKEND": "protocol_adapters.twilio_sms.TwilioSmsAdapter",
            "OPTIONS": {"AUTH_TOKEN": "benchmark-auth-token"},
        },
    },
}
