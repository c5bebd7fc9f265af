"""The two applications compared by `email_webhook.py`: the gateway's and anymail's own view.

Both run the same handler on each inbound message: read its subject and text, as a support
desk's consumer would first. In the gateway it is an `AsyncEmailConsumer` behind an
`EmailToRouter`; beside anymail's view it is a receiver of anymail's ``inbound`` signal.
"""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.email_webhook_settings")

import django

django.setup()

from email.message import EmailMessage  # noqa: E402
from typing import Any, cast  # noqa: E402

from anymail.signals import inbound  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402

from gateway import AsyncEmailConsumer, EmailToRouter, ProtocolTypeRouter, address  # noqa: E402

seen = {"messages": 0}


def read(subject: str, text: str) -> None:
    """The handler both stacks run; a message that is not the benchmark's fails it."""
    if not subject.startswith("Ticket ") or "Please help" not in text:
        raise ValueError(f"unexpected message {subject!r}")
    seen["messages"] += 1


class Support(AsyncEmailConsumer):
    async def receive(self, message: EmailMessage) -> None:
        read(self.subject, self.text)


def receiver(sender: Any, event: Any, esp_name: str, **kwargs: Any) -> None:
    read(event.message.subject or "", event.message.text or "")


django_application = get_asgi_application()
inbound.connect(receiver, weak=False)

gateway_application = ProtocolTypeRouter(
    {
        "http": cast(Any, django_application),
        "email": EmailToRouter([address(r"support@example\.com", Support.as_asgi())]),
    }
)
