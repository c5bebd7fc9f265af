"""Settings for the cluster test's gateway processes: a Redis channel layer and an MQTT share.

tests.integration.redis_settings (the channel layer on GATEWAY_TEST_REDIS_URL) plus an
ExternalBroker on MQTT_TEST_URL subscribed through the `$share` group MQTT_TEST_SHARED_GROUP.
Sessions end with the connection (clean start, no expiry): a killed process leaves no offline
session in the share for the broker to queue messages to, so its share moves to the others.
"""

from __future__ import annotations

import os
from typing import Any

from tests.integration.redis_settings import *  # noqa: F403

_options: dict[str, Any] = {
    "URL": os.environ.get("MQTT_TEST_URL", "mqtt://127.0.0.1:1883"),
    "SHARED_GROUP": os.environ.get("MQTT_TEST_SHARED_GROUP", "cluster"),
    "CLEAN_START": True,
    "SESSION_EXPIRY": 0,
    "RECONNECT": {"INITIAL": 0.05, "MAX": 0.5},
    "RETRY": {"ATTEMPTS": 2, "INITIAL_BACKOFF": 0.01, "MAX_BACKOFF": 0.02},
}
GATEWAY = {
    "SHUTDOWN_TIMEOUT": 3.0,
    "ADAPTERS": {
        "broker": {"BACKEND": "protocol_adapters.mqtt.ExternalBroker", "OPTIONS": _options}
    },
}
