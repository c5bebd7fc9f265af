"""Settings for the cross-process trace test: a Redis channel layer, and on the process given
TRACE_TEST_MQTT_URL an ExternalBroker (MQTT 5) on that Mosquitto."""

from __future__ import annotations

import os
from typing import Any

from tests.integration.redis_settings import *  # noqa: F403

_adapters: dict[str, Any] = {}
if os.environ.get("TRACE_TEST_MQTT_URL"):
    _adapters["broker"] = {
        "BACKEND": "protocol_adapters.mqtt.ExternalBroker",
        "OPTIONS": {"URL": os.environ["TRACE_TEST_MQTT_URL"], "CLEAN_START": True},
    }
GATEWAY = {"SHUTDOWN_TIMEOUT": 3.0, "ADAPTERS": _adapters}
