"""Settings with mistakes in GATEWAY, for `gateway run` refusing to start."""

from __future__ import annotations

from tests.settings import *  # noqa: F403

GATEWAY = {"HTTP": {"PORT": "abc"}, "SHUTDWON_TIMEOUT": 1}
