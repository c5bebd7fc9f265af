"""The local topology's root application (`gateway run deploy.local.app.asgi:application`)."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "deploy.settings")
django_asgi_app = get_asgi_application()

from gateway import (  # noqa: E402
    AllowedHostsOriginValidator,
    ChannelNameRouter,
    EmailToRouter,
    MqttTopicRouter,
    ProtocolTypeRouter,
    SMSFromRouter,
    URLRouter,
    address,
    topic,
)
from routers import path  # noqa: E402

from .consumers import (  # noqa: E402
    MAIL_JOBS,
    FeedConsumer,
    MailConsumer,
    MailJobConsumer,
    ReadingConsumer,
    TextConsumer,
)

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(
            URLRouter([path("ws/readings/", FeedConsumer.as_asgi())])
        ),
        "mqtt": MqttTopicRouter([topic("devices/{device_id}/readings", ReadingConsumer.as_asgi())]),
        "email": EmailToRouter([address(r"ops@topology\.example", MailConsumer.as_asgi())]),
        "sms": SMSFromRouter([], default=TextConsumer.as_asgi()),
        "channel": ChannelNameRouter({MAIL_JOBS: MailJobConsumer.as_asgi()}),
    }
)
