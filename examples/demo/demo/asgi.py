"""The demo's root application: every protocol the gateway speaks, in one router."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo.settings")
django_asgi_app = get_asgi_application()

from dashboard.consumers import DashboardConsumer  # noqa: E402
from django.urls import path  # noqa: E402  (Django must be set up first)

from gateway import (  # noqa: E402
    AllowedHostsOriginValidator,
    AuthMiddlewareStack,
    ProtocolTypeRouter,
    URLRouter,
)

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter([path("ws/dashboard/", DashboardConsumer.as_asgi())]))
        ),
    }
)
