"""Consumers: classes whose instances serve one scope, one method per message type."""

from __future__ import annotations

from gateway.consumers.base import AsyncConsumer, SyncConsumer
from gateway.consumers.http import AsyncHttpConsumer
from gateway.consumers.websocket import (
    AsyncJsonWebsocketConsumer,
    AsyncWebsocketConsumer,
    JsonWebsocketConsumer,
    WebsocketConsumer,
)

__all__ = [
    "AsyncConsumer",
    "AsyncHttpConsumer",
    "AsyncJsonWebsocketConsumer",
    "AsyncWebsocketConsumer",
    "JsonWebsocketConsumer",
    "SyncConsumer",
    "WebsocketConsumer",
]
