"""Settings for gateway processes sharing a Redis channel layer (cluster and worker tests).

The end-to-end settings, with CHANNEL_LAYERS on the Redis named by GATEWAY_TEST_REDIS_URL
under the key prefix GATEWAY_TEST_REDIS_PREFIX. The admin is left out: these processes serve
no admin, and without it they start faster.
"""

from __future__ import annotations

import os

from tests.server.e2e_settings import *  # noqa: F403
from tests.server.e2e_settings import INSTALLED_APPS

INSTALLED_APPS = [app for app in INSTALLED_APPS if app != "django.contrib.admin"]

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",  # the alias of ours
        "CONFIG": {  # type: ignore[dict-item]
            "hosts": [os.environ.get("GATEWAY_TEST_REDIS_URL", "redis://127.0.0.1:1/0")],
            "prefix": os.environ.get("GATEWAY_TEST_REDIS_PREFIX", "cluster"),
            "durable": ["jobs.*"],
            "claim_after": 1.0,
            "backoff_initial": 0.02,
            "backoff_max": 0.5,
            "block_seconds": 1.0,
        },
    },
}
