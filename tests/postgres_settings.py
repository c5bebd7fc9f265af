"""The test settings on PostgreSQL, for `tests/postgres/` (run by `tests/postgres/test_run.py`).

The server is a throw-away one the session starts (see `tests/postgres/conftest.py`), which
fills in HOST and PORT before the test database is created.
"""

from __future__ import annotations

from tests.settings import *  # noqa: F403

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "gateway",
        "USER": "postgres",
        "HOST": "127.0.0.1",
        "PORT": "",
    }
}
