"""Every router returns what the application it called returned, as Channels' routers do.

The Channels cases run the same calls against Channels' own routers (when installed), so
the expectation is the reference's behaviour, not our memory of it.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import path, re_path

import routers
from gateway.types import Message, Scope
from tests.layers.reference import IMPLEMENTATIONS, import_reference


class Returns:
    """An ASGI application that returns a fixed value."""

    def __init__(self, value: object) -> None:
        self.value = value

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> object:
        return self.value


async def _receive() -> Message:
    raise AssertionError("routing must not receive")


async def _send(message: Message) -> None:
    raise AssertionError("routing must not send")


def implementation(name: str) -> Any:
    """Our routers module, or Channels' routing module when the reference is installed."""
    return import_reference("channels.routing") if name == "channels" else routers


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
async def test_protocol_type_router_returns_the_value(name: str) -> None:
    module = implementation(name)
    router = module.ProtocolTypeRouter({"websocket": Returns("ws"), "http": Returns("http")})
    assert await router({"type": "websocket"}, _receive, _send) == "ws"
    assert await router({"type": "http"}, _receive, _send) == "http"


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
async def test_channel_name_router_returns_the_value(name: str) -> None:
    module = implementation(name)
    router = module.ChannelNameRouter({"a": Returns(1), "b": Returns(2)})
    assert await router({"type": "channel", "channel": "b"}, _receive, _send) == 2


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
async def test_url_router_returns_the_value_of_nested_routes(name: str) -> None:
    module = implementation(name)
    inner = module.URLRouter([path("<int:n>/", Returns("inner"))])
    router = module.URLRouter([path("outer/", inner), re_path(r"^flat/$", Returns("flat"))])
    assert await router({"type": "websocket", "path": "/flat/"}, _receive, _send) == "flat"
    assert await router({"type": "websocket", "path": "/outer/3/"}, _receive, _send) == "inner"


async def test_email_router_returns_the_value() -> None:
    router = routers.EmailToRouter([routers.address(r"support@example\.com", Returns(7))])
    scope = {"type": "email", "recipient": "support@example.com"}
    assert await router(scope, _receive, _send) == 7


async def test_sms_router_returns_the_value() -> None:
    router = routers.SMSFromRouter([routers.phone("+44", Returns("uk"))])
    scope = {"type": "sms", "from": "+447700900123", "to": "+15005550006"}
    assert await router(scope, _receive, _send) == "uk"


async def test_mqtt_router_returns_the_value() -> None:
    router = routers.MqttTopicRouter([routers.topic("devices/{id}/status", Returns("mqtt"))])
    scope = {"type": "mqtt", "topic": "devices/d1/status"}
    assert await router(scope, _receive, _send) == "mqtt"
