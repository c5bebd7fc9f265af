"""Settings of the gateway that `end_to_end.py` measures: one broker, one channel layer.

The driver picks them with E2E_BROKER (``embedded``: the gateway's own broker on
E2E_MQTT_PORT; ``external``: a client of the Mosquitto at E2E_MQTT_PORT), E2E_LAYER
(``memory`` or ``redis``, the latter at E2E_REDIS_URL) and E2E_QOS.
"""

from __future__ import annotations

import os
from typing import Any

from benchmarks.settings import *  # noqa: F403

_PORT = int(os.environ.get("E2E_MQTT_PORT", "0"))
_QOS = int(os.environ.get("E2E_QOS", "0"))

_MQTT: dict[str, Any]
if os.environ.get("E2E_BROKER", "embedded") == "external":
    _MQTT = {
        "BACKEND": "protocol_adapters.mqtt.ExternalBroker",
        "OPTIONS": {"URL": f"mqtt://127.0.0.1:{_PORT}", "QOS": _QOS},
    }
else:
    _MQTT = {
        "BACKEND": "protocol_adapters.mqtt.EmbeddedBroker",
        "OPTIONS": {"HOST": "127.0.0.1", "PORT": _PORT, "AUTH": "anonymous", "ACL": None},
    }

GATEWAY = {"HTTP": {"PORT": 0}, "ADAPTERS": {"mqtt": _MQTT}}

if os.environ.get("E2E_LAYER", "memory") == "redis":
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "gateway.layers.redis.RedisChannelLayer",
            "CONFIG": {"hosts": [os.environ["E2E_REDIS_URL"]]},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "gateway.layers.InMemoryChannelLayer"}}
