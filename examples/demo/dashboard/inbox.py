"""Support mail and text messages: each one shows up live on every dashboard."""

from __future__ import annotations

from email.message import EmailMessage

from asgiref.sync import sync_to_async

from django_app.models import Device
from gateway import AsyncEmailConsumer, AsyncSmsConsumer
from gateway.mqtt import apublish

from .consumers import to_dashboards

USAGE = "Text STATUS <device> or REBOOT <device>, e.g. STATUS sensor-1."


class SupportTicketConsumer(AsyncEmailConsumer):
    """support@demo.example: every mail opens a ticket on the dashboard and gets a receipt."""

    async def receive(self, message: EmailMessage) -> None:
        text = (self.text or self.html or "").strip()
        ticket = {
            "from": self.sender,
            "subject": self.subject or "(no subject)",
            "excerpt": text[:280],
            "message_id": self.message_id or "",
        }
        await to_dashboards(self, {"type": "ticket.opened", "ticket": ticket})
        # The loop guard and the per-sender rate limit decide whether the receipt goes out.
        await self.reply(f"We opened a ticket for your mail: {ticket['subject']}")


class DeviceTextConsumer(AsyncSmsConsumer):
    """Text commands for devices, routed by the sender's country prefix."""

    region = "elsewhere"
    # Vonage's replies go out through its REST API, which needs DEMO_VONAGE_API_SECRET: without
    # it a reply that cannot go out is logged, not retried and dead-lettered as a failure.
    on_reply_failure = "log"

    async def receive(self, body: str) -> None:
        command, _, device_id = body.strip().partition(" ")
        answer = await self.answer(command.upper(), device_id.strip())
        await to_dashboards(
            self,
            {
                "type": "sms.received",
                "sms": {"from": self.sender, "region": self.region, "body": body, "reply": answer},
            },
        )
        await self.reply(answer)

    async def answer(self, command: str, device_id: str) -> str:
        """The reply to one command."""
        if command not in ("STATUS", "REBOOT") or not device_id:
            return USAGE
        device = await sync_to_async(Device.objects.filter(device_id=device_id).first)()
        if device is None:
            return f"No device called {device_id}."
        if command == "REBOOT":
            await apublish(f"devices/{device_id}/commands", {"command": "reboot"}, qos=1)
            return f"Reboot sent to {device_id}."
        state = "online" if device.online else "offline"
        temperature = device.state.get("temperature") if isinstance(device.state, dict) else None
        reading = f", {temperature} °C" if temperature is not None else ""
        return f"{device_id}: {state}{reading}."
