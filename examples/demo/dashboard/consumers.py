"""The dashboard: device readings and presence over MQTT in, to every browser over WebSocket."""

from __future__ import annotations

from typing import Any

from django_app import devices
from gateway import (
    AsyncJsonMqttConsumer,
    AsyncJsonWebsocketConsumer,
    AsyncMqttConsumer,
    DeviceStateTooLarge,
)

GROUP = "dashboard"


async def to_dashboards(consumer: Any, event: dict[str, Any]) -> None:
    """Send `event` to every open dashboard, through the consumer's channel layer."""
    layer = consumer.channel_layer
    assert layer is not None, "the demo needs CHANNEL_LAYERS"
    await layer.group_send(GROUP, event)


class DashboardConsumer(AsyncJsonWebsocketConsumer):
    """Streams every reading and presence change to the browser; relays notes between browsers."""

    groups = [GROUP]

    async def connect(self) -> None:
        await self.accept()
        user = self.scope.get("user")
        name = user.get_username() if user and user.is_authenticated else "anonymous"
        await self.send_json({"kind": "hello", "user": name})

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        text = str(content.get("note", "")).strip()[:500] if isinstance(content, dict) else ""
        if text:
            await to_dashboards(self, {"type": "dashboard.note", "text": text})

    async def device_reading(self, event: dict[str, Any]) -> None:
        """A reading published by a device."""
        await self.send_json({"kind": "reading", **event["reading"]})

    async def device_presence(self, event: dict[str, Any]) -> None:
        """A device came online or went offline."""
        await self.send_json(
            {"kind": "presence", "device": event["device"], "online": event["online"]}
        )

    async def ticket_opened(self, event: dict[str, Any]) -> None:
        """A support mail arrived (SMTP or IMAP)."""
        await self.send_json({"kind": "ticket", **event["ticket"]})

    async def sms_received(self, event: dict[str, Any]) -> None:
        """A text message arrived through the SMS webhook, with the reply it got."""
        await self.send_json({"kind": "sms", **event["sms"]})

    async def dashboard_note(self, event: dict[str, Any]) -> None:
        """A note typed by an operator on any dashboard."""
        await self.send_json({"kind": "note", "text": event["text"]})


class TelemetryConsumer(AsyncJsonMqttConsumer):
    """devices/<id>/telemetry: record the reading (Device.state keeps the last ones), show it."""

    async def receive_json(self, data: Any) -> None:
        device_id = self.scope["url_route"]["kwargs"]["device_id"]
        reading = data if isinstance(data, dict) else {"value": data}
        try:
            await devices.record_reading(device_id, reading)
        except DeviceStateTooLarge:
            return  # logged by record_reading; a retry would be refused the same way
        await to_dashboards(
            self, {"type": "device.reading", "reading": {**reading, "device": device_id}}
        )


class StatusConsumer(AsyncMqttConsumer):
    """devices/<id>/status: "online" when a device starts, its will "offline" when it is lost."""

    async def receive(self, payload: bytes) -> None:
        device_id = self.scope["url_route"]["kwargs"]["device_id"]
        online = payload.strip() == b"online"
        await to_dashboards(
            self, {"type": "device.presence", "device": device_id, "online": online}
        )
