"""Run as a script with opentelemetry made unimportable: the gateway works, untraced.

A message from a traced process (carrying "_trace") still reaches a handler without the key.
"""

from __future__ import annotations

import sys

sys.modules["opentelemetry"] = None  # type: ignore[assignment]  # import now raises ImportError

import asyncio  # noqa: E402

import django  # noqa: E402

django.setup()

from gateway import AsyncJsonMqttConsumer, tracing  # noqa: E402
from gateway.layers import get_channel_layer  # noqa: E402
from gateway.mqtt import InboundMessage, build_mqtt_scope  # noqa: E402
from gateway.pipeline import KeyedDispatcher  # noqa: E402
from gateway.run_event import run_one_event  # noqa: E402
from gateway.types import Message  # noqa: E402

seen: list[Message] = []


class Relay(AsyncJsonMqttConsumer):
    async def receive_json(self, content: object) -> None:
        assert self.channel_layer is not None
        await self.channel_layer.send("out", {"type": "reading", "_trace": {"traceparent": "x"}})
        message = await self.channel_layer.receive("out")
        await self._dispatch_traced(message)

    async def reading(self, message: Message) -> None:
        seen.append(message)


async def main() -> None:
    assert not tracing.INSTALLED
    assert not tracing.configure()
    assert tracing.tracer is None
    assert get_channel_layer() is not None
    scope = dict(build_mqtt_scope(InboundMessage("t", b"{}"), adapter="a", broker="external"))

    async def send(event: Message) -> None:
        pass

    app = Relay.as_asgi()
    event = {"type": "mqtt.message", "payload": b"{}"}
    handler = lambda: run_one_event(app, scope, event, send)  # noqa: E731
    outcome = await KeyedDispatcher("mqtt").run("t", handler, scope=scope, payload=b"")
    assert outcome.handled, outcome
    assert seen == [{"type": "reading"}], seen
    print("ok")


asyncio.run(main())
