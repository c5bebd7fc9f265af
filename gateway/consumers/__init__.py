"""Consumers: classes whose instances serve one scope, one method per message type."""

from __future__ import annotations

from gateway.consumers.base import AsyncConsumer, SyncConsumer
from gateway.consumers.email import AsyncEmailConsumer, EmailConsumer
from gateway.consumers.http import AsyncHttpConsumer
from gateway.consumers.mqtt import (
    AsyncJsonMqttConsumer,
    AsyncMqttConsumer,
    JsonMqttConsumer,
    MqttConsumer,
)
from gateway.consumers.sms import AsyncSmsConsumer, SmsConsumer
from gateway.consumers.websocket import (
    AsyncJsonWebsocketConsumer,
    AsyncWebsocketConsumer,
    JsonWebsocketConsumer,
    WebsocketConsumer,
)

__all__ = [
    "AsyncConsumer",
    "AsyncEmailConsumer",
    "AsyncHttpConsumer",
    "AsyncJsonMqttConsumer",
    "AsyncJsonWebsocketConsumer",
    "AsyncMqttConsumer",
    "AsyncSmsConsumer",
    "AsyncWebsocketConsumer",
    "EmailConsumer",
    "JsonMqttConsumer",
    "JsonWebsocketConsumer",
    "MqttConsumer",
    "SmsConsumer",
    "SyncConsumer",
    "WebsocketConsumer",
]
