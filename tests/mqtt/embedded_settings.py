"""Settings for `gateway run` with the embedded broker on MQTT_TEST_PORT (anonymous)."""

from __future__ import annotations

import os

from tests.settings import *  # noqa: F403

GATEWAY = {
    "SHUTDOWN_TIMEOUT": 3.0,
    "HTTP": {"ENABLED": False},
    "ADAPTERS": {
        "broker": {
            "BACKEND": "protocol_adapters.mqtt.EmbeddedBroker",
            "OPTIONS": {
                "PORT": int(os.environ.get("MQTT_TEST_PORT", "0")),
                "AUTH": "anonymous",
                "ACL": None,
                "RETRY": {"ATTEMPTS": 2, "INITIAL_BACKOFF": 0.01, "MAX_BACKOFF": 0.02},
            },
        }
    },
}
