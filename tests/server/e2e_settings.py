"""Settings for the end-to-end tests: tests.settings plus a line adapter."""

from __future__ import annotations

import os

from tests.settings import *  # noqa: F403

GATEWAY = {
    "SHUTDOWN_TIMEOUT": 3.0,
    "LOOP": os.environ.get("GATEWAY_E2E_LOOP", "auto"),
    **(
        {"SWITCH_INTERVAL": float(os.environ["GATEWAY_E2E_SWITCH_INTERVAL"])}
        if "GATEWAY_E2E_SWITCH_INTERVAL" in os.environ
        else {}
    ),
    "ADAPTERS": {
        "lines": {
            "BACKEND": "tests.server.line_adapter.LineAdapter",
            "OPTIONS": {"PORT": 0, "STOP_MARKER": os.environ.get("GATEWAY_E2E_STOP_MARKER", "")},
        },
    },
}
