"""An application whose consumer fails until an operator account exists, and admin URLs."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth.models import User
from django.urls import path

from gateway.consumers import JsonMqttConsumer
from routers import MqttTopicRouter, ProtocolTypeRouter, topic


class OperatorMissing(Exception):
    """The failure condition the tests fix before replaying."""


class Acknowledge(JsonMqttConsumer):
    """Acknowledges a reading on behalf of the operator account, which must exist."""

    def receive_json(self, data: Any) -> None:
        if not User.objects.filter(username="operator").exists():
            raise OperatorMissing("no operator account")
        device = self.scope["url_route"]["kwargs"]["device_id"]
        self.publish(f"devices/{device}/ack", {"seen": data["n"], "dup": self.scope["dup"]})


application = ProtocolTypeRouter(
    {"mqtt": MqttTopicRouter([topic("devices/{device_id}/reading", Acknowledge.as_asgi())])}
)

urlpatterns = [path("admin/", admin.site.urls)]
