"""The application `gateway run` serves in the external-broker process tests.

Every handled message appends a line to the file named by MQTT_TEST_EVENTS:
``start <pid> <topic> <payload>`` when the consumer begins, ``done <pid> <topic> <payload>``
when it returns. With MQTT_TEST_BLOCK=1 the consumer never returns after "start"; with
MQTT_TEST_DELAY=<seconds> it takes that long.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import cast

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.mqtt.external_settings")
django_asgi_app = get_asgi_application()

from gateway import AsyncMqttConsumer, MqttTopicRouter, ProtocolTypeRouter  # noqa: E402
from gateway.types import ASGIApp  # noqa: E402
from routers import topic  # noqa: E402


def _record(event: str, consumer: AsyncMqttConsumer, payload: bytes) -> None:
    line = f"{event} {os.getpid()} {consumer.topic} {payload.decode()}\n"
    # One small O_APPEND write per line: lines of several processes never interleave.
    with Path(os.environ["MQTT_TEST_EVENTS"]).open("a") as file:
        file.write(line)


class Recorder(AsyncMqttConsumer):
    async def receive(self, payload: bytes) -> None:
        _record("start", self, payload)
        if os.environ.get("MQTT_TEST_BLOCK") == "1":
            await asyncio.Event().wait()
        if os.environ.get("MQTT_TEST_DELAY"):
            await asyncio.sleep(float(os.environ["MQTT_TEST_DELAY"]))
        _record("done", self, payload)


application = ProtocolTypeRouter(
    {
        "http": cast(ASGIApp, django_asgi_app),
        "mqtt": MqttTopicRouter([topic("work/{item}", Recorder.as_asgi())]),
    }
)
