"""Routers: ASGI applications that pick another application for each scope."""

from __future__ import annotations

from routers.channel import ChannelNameRouter
from routers.email import EmailToRouter, address
from routers.mqtt import MqttTopicRouter, topic
from routers.protocol import ProtocolTypeRouter
from routers.sms import SMSFromRouter, SMSToRouter, country, phone
from routers.url import URLRouter, path, re_path

__all__ = [
    "ChannelNameRouter",
    "EmailToRouter",
    "MqttTopicRouter",
    "ProtocolTypeRouter",
    "SMSFromRouter",
    "SMSToRouter",
    "URLRouter",
    "address",
    "country",
    "path",
    "phone",
    "re_path",
    "topic",
]
