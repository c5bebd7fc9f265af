"""The application of intake_flood.py's gateways: every intake's consumer, Django for HTTP."""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any

from django.core.asgi import get_asgi_application

from django_app.devices import touch
from gateway import (
    AsyncEmailConsumer,
    AsyncSmsConsumer,
    EmailToRouter,
    ProtocolTypeRouter,
    SMSFromRouter,
    address,
)


class Texts(AsyncSmsConsumer):
    """Answers each SMS in the webhook's TwiML."""

    async def receive(self, body: str) -> None:
        await self.reply(f"got: {body}")


class Mail(AsyncEmailConsumer):
    """Takes each mail (the webhook's store keeps it)."""

    async def receive(self, message: EmailMessage) -> None:
        return None


async def telemetry(scope: Any, receive: Any, send: Any) -> None:
    """A device's reading: its last-seen time written."""
    await receive()
    await touch(scope["device_id"])


application = ProtocolTypeRouter(
    {
        "http": get_asgi_application(),
        "mqtt": telemetry,
        "sms": SMSFromRouter([], default=Texts.as_asgi()),
        "email": EmailToRouter([address(r"support@example\.com", Mail.as_asgi())]),
    }
)
