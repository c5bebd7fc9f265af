"""Settings for the failover test's gateway processes: cluster_settings with persistent
sessions and FAILOVER on (short heartbeats); each process's CLIENT_ID comes from its command
line (`--set broker.CLIENT_ID=...`)."""

from __future__ import annotations

from typing import Any

from tests.e2e.cluster_settings import *  # noqa: F403
from tests.e2e.cluster_settings import GATEWAY as _CLUSTER

_options: dict[str, Any] = {
    **_CLUSTER["ADAPTERS"]["broker"]["OPTIONS"],
    "CLEAN_START": False,
    "SESSION_EXPIRY": 3600,
    "FAILOVER": {"HEARTBEAT": 0.2, "EXPIRY": 1.0, "QUIET": 0.5},
}
GATEWAY = {
    **_CLUSTER,
    "ADAPTERS": {"broker": {**_CLUSTER["ADAPTERS"]["broker"], "OPTIONS": _options}},
}
