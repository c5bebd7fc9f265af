"""Settings for the dashboard test: HTTP and the embedded broker, each on a free port."""

from __future__ import annotations

from tests.settings import *  # noqa: F403

GATEWAY = {
    "SHUTDOWN_TIMEOUT": 3.0,
    "DEAD_LETTER_HANDLER": "gateway.pipeline.log_dead_letter",
    "ADAPTERS": {
        "broker": {
            "BACKEND": "protocol_adapters.mqtt.EmbeddedBroker",
            "OPTIONS": {
                "PORT": 0,
                "AUTH": "anonymous",
                "ACL": None,
                "RETRY": {"ATTEMPTS": 2, "INITIAL_BACKOFF": 0.01, "MAX_BACKOFF": 0.02},
            },
        }
    },
}
