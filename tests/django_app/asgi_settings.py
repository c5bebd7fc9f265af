"""tests.settings with ASGI_APPLICATION in Django's "module.attribute" form."""

from __future__ import annotations

from tests.settings import *  # noqa: F403

ASGI_APPLICATION = "tests.server.e2e_app.application"
