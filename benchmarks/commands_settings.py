"""Settings of `mqtt_commands.py`'s gateway: the shared ones, the history in an SQLite file."""

from __future__ import annotations

import os

from benchmarks.settings import *  # noqa: F403

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("BENCH_DB", "bench-commands.sqlite3"),
        # WAL and a busy timeout: the history is written from a thread pool.
        "OPTIONS": {"timeout": 20, "init_command": "PRAGMA journal_mode=WAL;"},
    }
}
