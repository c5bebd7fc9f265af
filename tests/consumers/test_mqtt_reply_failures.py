"""An MQTT consumer's publish that cannot be sent: the external broker went away meanwhile.

A real Mosquitto delivers the message to the gateway's external-broker adapter; the consumer
stops Mosquitto before it publishes its answer, so the publish finds no connection.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from gateway import AsyncMqttConsumer, MqttTopicRouter, ProtocolTypeRouter
from gateway.pipeline import DeadLetter
from gateway.server import Gateway
from routers import topic
from tests.integration.mosquitto import Mosquitto, running_mosquitto
from tests.mqtt.external_support import (
    adapter_of,
    eventually,
    mosquitto_pub,
    running_gateway,
    settings_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    with running_mosquitto() as started:
        yield started


def ack_app(broker: Mosquitto, running: list[Gateway], runs: list[int], **attributes: Any) -> Any:
    class Ack(AsyncMqttConsumer):
        async def receive(self, payload: bytes) -> None:
            runs.append(len(runs) + 1)
            if runs == [1]:  # the broker goes away while the first run handles the message
                await asyncio.to_thread(broker.stop)
                adapter = adapter_of(running[0])
                await eventually(lambda: adapter.health().status != "ok", "the connection lost")
            await self.publish(f"devices/{self.scope['url_route']['kwargs']['id']}/ack", payload)

    for name, value in attributes.items():
        setattr(Ack, name, value)
    router = MqttTopicRouter([topic("devices/{id}/telemetry", Ack.as_asgi())])
    return ProtocolTypeRouter({"mqtt": router})


async def test_a_publish_without_a_broker_fails_the_message_and_dead_letters_it(
    broker: Mosquitto,
) -> None:
    letters: list[DeadLetter] = []

    async def dead_letter(letter: DeadLetter) -> None:
        letters.append(letter)

    running: list[Gateway] = []
    runs: list[int] = []
    settings = settings_for(broker, dead_letter, CONNECT_TIMEOUT=0.3)
    async with running_gateway(ack_app(broker, running, runs), settings) as gateway:
        running.append(gateway)
        await mosquitto_pub(broker, "devices/d-1/telemetry", "21.5")
        await eventually(lambda: bool(letters), "a dead letter")
    assert runs == [1, 2]  # raised in the consumer: each try runs it again
    [letter] = letters
    assert letter.attempts == 2
    assert "ConnectionError" in letter.error
    assert "not connected to" in letter.error
    assert '"topic": "devices/d-1/ack"' in letter.error
    assert '"payload": "21.5"' in letter.error


async def test_a_consumer_may_choose_to_only_log_an_unsent_publish(
    broker: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "gateway.replies")
    letters: list[DeadLetter] = []

    async def dead_letter(letter: DeadLetter) -> None:
        letters.append(letter)

    running: list[Gateway] = []
    runs: list[int] = []
    app = ack_app(broker, running, runs, on_reply_failure="log")
    settings = settings_for(broker, dead_letter, CONNECT_TIMEOUT=0.3)
    async with running_gateway(app, settings) as gateway:
        running.append(gateway)
        await mosquitto_pub(broker, "devices/d-2/telemetry", "19.0")
        await eventually(
            lambda: any(r.name == "gateway.replies" for r in caplog.records), "the log line"
        )
    assert runs == [1]
    assert letters == []
    [record] = [r for r in caplog.records if r.name == "gateway.replies"]
    assert '"topic": "devices/d-2/ack"' in record.getMessage()
