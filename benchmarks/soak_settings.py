"""The demo's settings for the soak (`benchmarks/soak.py`): its topology, other ports and DB.

The soak sets DEMO_HTTP_PORT, DEMO_MQTT_PORT, DEMO_SMTP_PORT, DEMO_DB and DEMO_SENT_MAIL, and
runs from examples/demo (where `demo.settings` is importable). Four changes only:

- device passwords are hashed with a fast hasher, so that a thousand devices log in within
  seconds (a default-hasher check takes ~0.5 s of CPU each, one at a time, see issue #16);
- DEBUG is off: with it on, Django keeps the last 9,000 queries of every database connection,
  memory that fills for minutes and says nothing about the gateway;
- the broker takes up to 10,000 connections from one address (the devices all come from
  127.0.0.1; the default is 1,000);
- the demo's own three simulated devices run as usual; the soak's devices come from
  ``gateway simulate`` in a process of their own.
"""

from __future__ import annotations

from typing import Any, cast

from demo.settings import *  # noqa: F403

DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# One line per request otherwise.
cast(dict[str, Any], LOGGING)["loggers"]["gateway"]["level"] = "WARNING"  # noqa: F405
# Every simulated device connects from 127.0.0.1: above the default 1,000 per address.
broker = cast(dict[str, Any], GATEWAY)["ADAPTERS"]["devices"]["OPTIONS"]  # noqa: F405
broker["MAX_CONNECTIONS_PER_ADDRESS"] = 10_000
