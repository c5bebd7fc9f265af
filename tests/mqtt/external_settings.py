"""Settings for `gateway run` against a test Mosquitto: tests.settings plus an ExternalBroker.

The broker URL, client id and shared group come from the environment (MQTT_TEST_*).
"""

from __future__ import annotations

import os
from typing import Any

from tests.settings import *  # noqa: F403

_options: dict[str, Any] = {
    "URL": os.environ.get("MQTT_TEST_URL", "mqtt://127.0.0.1:1883"),
    "CLIENT_ID": os.environ.get("MQTT_TEST_CLIENT_ID") or None,
    "SHARED_GROUP": os.environ.get("MQTT_TEST_SHARED_GROUP") or None,
    "PROTOCOL": "3.1.1" if os.environ.get("MQTT_TEST_PROTOCOL") == "3.1.1" else 5,
    "RECONNECT": {"INITIAL": 0.05, "MAX": 0.5},
    "RETRY": {"ATTEMPTS": 2, "INITIAL_BACKOFF": 0.01, "MAX_BACKOFF": 0.02},
}
GATEWAY = {
    "SHUTDOWN_TIMEOUT": 3.0,
    "ADAPTERS": {
        "broker": {"BACKEND": "protocol_adapters.mqtt.ExternalBroker", "OPTIONS": _options}
    },
}
