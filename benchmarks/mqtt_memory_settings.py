"""Settings for mqtt_memory.py: the embedded broker alone (no HTTP), anonymous logins with
the default per-client topic ACL (``devices/{device_id}/#``, the client id standing for the
device), the connection caps raised past the benchmark's clients."""

from __future__ import annotations

import os
from typing import Any

from benchmarks.settings import *  # noqa: F403

GATEWAY: dict[str, Any] = {  # type: ignore[no-redef]
    "HTTP": {"ENABLED": False},
    "ADAPTERS": {
        "mqtt": {
            "BACKEND": "protocol_adapters.mqtt.EmbeddedBroker",
            "OPTIONS": {
                "PORT": int(os.environ.get("MQTT_MEMORY_PORT", "0")),
                "AUTH": "anonymous",
                "MAX_CONNECTIONS": 1_000_000,
                "MAX_CONNECTIONS_PER_ADDRESS": 1_000_000,
                "CONNECT_TIMEOUT": 60.0,
            },
        }
    },
}
