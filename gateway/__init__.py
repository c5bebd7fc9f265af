"""Gateway: HTTP, WebSocket, MQTT, email and SMS as ASGI scopes, routed to Django consumers.

Everything public is importable from here; names load on first use, so importing
``gateway`` neither configures Django nor imports any protocol library.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # routing
    "ProtocolTypeRouter": "routers",
    "URLRouter": "routers",
    "path": "routers",
    "re_path": "routers",
    "ChannelNameRouter": "routers",
    "MqttTopicRouter": "routers",
    "topic": "routers",
    "EmailToRouter": "routers",
    "address": "routers",
    "SMSFromRouter": "routers",
    "SMSToRouter": "routers",
    "phone": "routers",
    "country": "routers",
    # consumers
    "AsyncConsumer": "gateway.consumers",
    "SyncConsumer": "gateway.consumers",
    "WebsocketConsumer": "gateway.consumers",
    "AsyncWebsocketConsumer": "gateway.consumers",
    "JsonWebsocketConsumer": "gateway.consumers",
    "AsyncJsonWebsocketConsumer": "gateway.consumers",
    "AsyncHttpConsumer": "gateway.consumers",
    "MqttConsumer": "gateway.consumers",
    "AsyncMqttConsumer": "gateway.consumers",
    "JsonMqttConsumer": "gateway.consumers",
    "AsyncJsonMqttConsumer": "gateway.consumers",
    "SmsConsumer": "gateway.consumers",
    "AsyncSmsConsumer": "gateway.consumers",
    "EmailConsumer": "gateway.consumers",
    "AsyncEmailConsumer": "gateway.consumers",
    "database_sync_to_async": "gateway.db",
    # channel layers
    "DEFAULT_CHANNEL_LAYER": "gateway.layers",
    "get_channel_layer": "gateway.layers",
    "channel_layers": "gateway.layers",
    "ChannelLayerManager": "gateway.layers",
    "BaseChannelLayer": "gateway.layers",
    "InMemoryChannelLayer": "gateway.layers",
    # middleware and security
    "BaseMiddleware": "gateway.middleware",
    "CookieMiddleware": "gateway.middleware",
    "SessionMiddleware": "gateway.middleware",
    "SessionMiddlewareStack": "gateway.middleware",
    "AuthMiddleware": "gateway.middleware",
    "AuthMiddlewareStack": "gateway.middleware",
    "OriginValidator": "gateway.middleware",
    "AllowedHostsOriginValidator": "gateway.middleware",
    "get_user": "gateway.middleware",
    "login": "gateway.middleware",
    "logout": "gateway.middleware",
    # exceptions
    "GatewayError": "gateway.exceptions",
    "ImproperlyConfiguredGateway": "gateway.exceptions",
    "ChannelLayerError": "gateway.exceptions",
    "ChannelFull": "gateway.exceptions",
    "InvalidChannelLayerError": "gateway.exceptions",
    "InvalidChannelName": "gateway.exceptions",
    "MessageTypeError": "gateway.exceptions",
    "UnserializableMessage": "gateway.exceptions",
    "ChannelLayerUnavailable": "gateway.exceptions",
    "RouteNotFound": "gateway.exceptions",
    "UnknownProtocol": "gateway.exceptions",
    "UnknownMessageType": "gateway.exceptions",
    "StopConsumer": "gateway.exceptions",
    "AcceptConnection": "gateway.exceptions",
    "DenyConnection": "gateway.exceptions",
    "RequestAborted": "gateway.exceptions",
    "SmsSendError": "gateway.exceptions",
    "SmsOptedOut": "gateway.exceptions",
    "CommandTimeout": "gateway.exceptions",
    "DeviceStateTooLarge": "gateway.exceptions",
    # the process
    "Gateway": "gateway.server",
    "ProtocolAdapter": "gateway.adapters",
    "KeyedDispatcher": "gateway.pipeline",
}

__all__ = [
    "DEFAULT_CHANNEL_LAYER",
    "AcceptConnection",
    "AllowedHostsOriginValidator",
    "AsyncConsumer",
    "AsyncEmailConsumer",
    "AsyncHttpConsumer",
    "AsyncJsonMqttConsumer",
    "AsyncJsonWebsocketConsumer",
    "AsyncMqttConsumer",
    "AsyncSmsConsumer",
    "AsyncWebsocketConsumer",
    "AuthMiddleware",
    "AuthMiddlewareStack",
    "BaseChannelLayer",
    "BaseMiddleware",
    "ChannelFull",
    "ChannelLayerError",
    "ChannelLayerManager",
    "ChannelLayerUnavailable",
    "ChannelNameRouter",
    "CommandTimeout",
    "CookieMiddleware",
    "DenyConnection",
    "DeviceStateTooLarge",
    "EmailConsumer",
    "EmailToRouter",
    "Gateway",
    "GatewayError",
    "ImproperlyConfiguredGateway",
    "InMemoryChannelLayer",
    "InvalidChannelLayerError",
    "InvalidChannelName",
    "JsonMqttConsumer",
    "JsonWebsocketConsumer",
    "KeyedDispatcher",
    "MessageTypeError",
    "MqttConsumer",
    "MqttTopicRouter",
    "OriginValidator",
    "ProtocolAdapter",
    "ProtocolTypeRouter",
    "RequestAborted",
    "RouteNotFound",
    "SMSFromRouter",
    "SMSToRouter",
    "SessionMiddleware",
    "SessionMiddlewareStack",
    "SmsConsumer",
    "SmsOptedOut",
    "SmsSendError",
    "StopConsumer",
    "SyncConsumer",
    "URLRouter",
    "UnknownMessageType",
    "UnknownProtocol",
    "UnserializableMessage",
    "WebsocketConsumer",
    "__version__",
    "address",
    "channel_layers",
    "country",
    "database_sync_to_async",
    "get_channel_layer",
    "get_user",
    "login",
    "logout",
    "path",
    "phone",
    "re_path",
    "topic",
]

if TYPE_CHECKING:
    from gateway.adapters import ProtocolAdapter
    from gateway.consumers import (
        AsyncConsumer,
        AsyncEmailConsumer,
        AsyncHttpConsumer,
        AsyncJsonMqttConsumer,
        AsyncJsonWebsocketConsumer,
        AsyncMqttConsumer,
        AsyncSmsConsumer,
        AsyncWebsocketConsumer,
        EmailConsumer,
        JsonMqttConsumer,
        JsonWebsocketConsumer,
        MqttConsumer,
        SmsConsumer,
        SyncConsumer,
        WebsocketConsumer,
    )
    from gateway.db import database_sync_to_async
    from gateway.exceptions import (
        AcceptConnection,
        ChannelFull,
        ChannelLayerError,
        ChannelLayerUnavailable,
        CommandTimeout,
        DenyConnection,
        DeviceStateTooLarge,
        GatewayError,
        ImproperlyConfiguredGateway,
        InvalidChannelLayerError,
        InvalidChannelName,
        MessageTypeError,
        RequestAborted,
        RouteNotFound,
        SmsOptedOut,
        SmsSendError,
        StopConsumer,
        UnknownMessageType,
        UnknownProtocol,
        UnserializableMessage,
    )
    from gateway.layers import (
        DEFAULT_CHANNEL_LAYER,
        BaseChannelLayer,
        ChannelLayerManager,
        InMemoryChannelLayer,
        channel_layers,
        get_channel_layer,
    )
    from gateway.middleware import (
        AllowedHostsOriginValidator,
        AuthMiddleware,
        AuthMiddlewareStack,
        BaseMiddleware,
        CookieMiddleware,
        OriginValidator,
        SessionMiddleware,
        SessionMiddlewareStack,
        get_user,
        login,
        logout,
    )
    from gateway.pipeline import KeyedDispatcher
    from gateway.server import Gateway
    from routers import (
        ChannelNameRouter,
        EmailToRouter,
        MqttTopicRouter,
        ProtocolTypeRouter,
        SMSFromRouter,
        SMSToRouter,
        URLRouter,
        address,
        country,
        path,
        phone,
        re_path,
        topic,
    )


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'gateway' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
