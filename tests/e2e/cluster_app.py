"""The cluster test's application: the rooms of `consumer_app` and the MQTT recorder.

/ws/room/<name>/ joins group "room-<name>" and broadcasts what it is sent (consumer_app.Room);
MQTT topic work/<item> is handled by tests.mqtt.external_app.Recorder, which appends
``start|done <pid> <topic> <payload>`` lines to the file named by MQTT_TEST_EVENTS.
"""

from __future__ import annotations

from typing import cast

from django.urls import path

from gateway import MqttTopicRouter, ProtocolTypeRouter, URLRouter
from gateway.types import ASGIApp
from routers import topic
from tests.e2e.consumer_app import Room, django_asgi_app
from tests.mqtt.external_app import Recorder

application = ProtocolTypeRouter(
    {
        "http": cast(ASGIApp, django_asgi_app),
        "websocket": URLRouter([path("ws/room/<slug:name>/", Room.as_asgi())]),
        "mqtt": MqttTopicRouter([topic("work/{item}", Recorder.as_asgi())]),
    }
)
