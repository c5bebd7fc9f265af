"""The application the dashboard test runs: Django for HTTP, MQTT messages that fail on "fail"."""

from __future__ import annotations

import logging
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.deploy.metrics_settings")
django_asgi_app = get_asgi_application()

from gateway.types import Receive, Scope, Send  # noqa: E402
from routers import ProtocolTypeRouter  # noqa: E402

logger = logging.getLogger("tests.deploy.app")


async def mqtt(scope: Scope, receive: Receive, send: Send) -> None:
    payload = (await receive())["payload"]
    logger.info("reading %r", payload)
    if payload == b"fail":
        raise RuntimeError("the application failed")


application = ProtocolTypeRouter({"http": django_asgi_app, "mqtt": mqtt})
