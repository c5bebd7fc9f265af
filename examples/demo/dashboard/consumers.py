"""The dashboard's WebSocket: live device readings in, operator notes out to every browser."""

from __future__ import annotations

from typing import Any

from gateway import AsyncJsonWebsocketConsumer

GROUP = "dashboard"


class DashboardConsumer(AsyncJsonWebsocketConsumer):
    """Streams every `device.reading` to the browser; relays notes between browsers."""

    groups = [GROUP]

    async def connect(self) -> None:
        await self.accept()
        user = self.scope.get("user")
        name = user.get_username() if user and user.is_authenticated else "anonymous"
        await self.send_json({"kind": "hello", "user": name})

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        text = str(content.get("note", "")).strip()[:500] if isinstance(content, dict) else ""
        if text:
            await self.channel_layer.group_send(GROUP, {"type": "dashboard.note", "text": text})

    async def device_reading(self, event: dict[str, Any]) -> None:
        """A reading published by a device."""
        await self.send_json({"kind": "reading", **event["reading"]})

    async def dashboard_note(self, event: dict[str, Any]) -> None:
        """A note typed by an operator on any dashboard."""
        await self.send_json({"kind": "note", "text": event["text"]})
