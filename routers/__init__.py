"""Routers: ASGI applications that pick another application for each scope."""

from __future__ import annotations

from routers.channel import ChannelNameRouter
from routers.protocol import ProtocolTypeRouter
from routers.url import URLRouter

__all__ = ["ChannelNameRouter", "ProtocolTypeRouter", "URLRouter"]
