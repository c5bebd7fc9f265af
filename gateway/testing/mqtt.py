"""`MqttCommunicator`: run an ASGI application on one MQTT message and see what it published."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from gateway.mqtt import MAX_PAYLOAD, InboundMessage, build_mqtt_scope, run_mqtt_app
from gateway.testing.application import run_in_test_context
from gateway.types import ASGIApp, MqttProperties, MqttPublishEvent, MqttScope

__all__ = ["MqttCommunicator"]


class MqttCommunicator:
    """Delivers one message to an application with the scope the MQTT adapters build."""

    def __init__(
        self,
        application: ASGIApp,
        topic: str,
        payload: bytes | str,
        *,
        qos: Literal[0, 1, 2] = 0,
        retain: bool = False,
        client_id: str | None = None,
        device_id: str | None = None,
        properties: Mapping[str, Any] | None = None,
        subscription: str = "#",
        broker: Literal["embedded", "external"] = "embedded",
        adapter: str = "mqtt",
        max_payload: int = MAX_PAYLOAD,
    ) -> None:
        self.application = application
        self.payload = payload.encode("utf-8") if isinstance(payload, str) else payload
        self.max_payload = max_payload
        message = InboundMessage(
            topic=topic,
            payload=self.payload,
            qos=qos,
            retain=retain,
            message_id=None if qos == 0 else 1,
            client_id=client_id,
            device_id=device_id,
            subscription=subscription,
            properties=MqttProperties(**(properties or {})),  # type: ignore[typeddict-item]
        )
        self.scope: MqttScope = build_mqtt_scope(message, adapter=adapter, broker=broker)
        self.published: list[MqttPublishEvent] = []

    async def deliver(self, timeout: float = 1) -> list[MqttPublishEvent]:
        """Run the application on the message; return what it published, or raise its error."""
        self.published = []
        coroutine = run_mqtt_app(
            self.application, self.scope, self.payload, self._publish, max_payload=self.max_payload
        )
        await run_in_test_context(coroutine, timeout)
        return list(self.published)

    async def _publish(self, event: MqttPublishEvent) -> None:
        self.published.append(event)
