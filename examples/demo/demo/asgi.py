"""The demo's root application: every protocol the gateway speaks, in one router."""

from __future__ import annotations

import os

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo.settings")
# The page's script (dashboard/static/) is served by Django's staticfiles handler, as DEBUG is on.
django_asgi_app = ASGIStaticFilesHandler(get_asgi_application())

from dashboard.consumers import (  # noqa: E402
    DashboardConsumer,
    StatusConsumer,
    TelemetryConsumer,
)
from dashboard.inbox import DeviceTextConsumer, SupportTicketConsumer  # noqa: E402

from gateway import (  # noqa: E402
    AllowedHostsOriginValidator,
    AuthMiddlewareStack,
    EmailToRouter,
    MqttTopicRouter,
    ProtocolTypeRouter,
    SMSFromRouter,
    URLRouter,
    address,
    phone,
    topic,
)
from routers import path  # noqa: E402  (django.urls.path, typed for ASGI applications)

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter([path("ws/dashboard/", DashboardConsumer.as_asgi())]))
        ),
        "mqtt": MqttTopicRouter(
            [
                topic("devices/{device_id}/telemetry", TelemetryConsumer.as_asgi()),
                topic("devices/{device_id}/status", StatusConsumer.as_asgi()),
            ]
        ),
        "email": EmailToRouter(
            [address(r"support@demo\.example", SupportTicketConsumer.as_asgi())]
        ),
        "sms": SMSFromRouter(
            [
                phone("+44", DeviceTextConsumer.as_asgi(region="UK")),
                phone("+1", DeviceTextConsumer.as_asgi(region="North America")),
            ],
            default=DeviceTextConsumer.as_asgi(),
        ),
    }
)
