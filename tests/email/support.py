"""A gateway with the SMTP adapter in the test's own loop, and blocking SMTP clients."""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from typing import Any

from gateway.conf import GatewaySettings
from gateway.consumers.email import AsyncEmailConsumer
from gateway.server import Gateway
from gateway.types import ASGIApp
from routers import EmailToRouter, ProtocolTypeRouter, address

SMTP_ADAPTER = "protocol_adapters.smtp.SMTPAdapter"
TIMEOUT = 30.0  # generous: only there to avoid hanging


@dataclass
class Inbox:
    """What the test consumers saw, shared by the consumer classes of one test."""

    seen: list[dict[str, Any]] = field(default_factory=list)
    fail_times: int = 0

    def record(self, consumer: AsyncEmailConsumer) -> None:
        self.seen.append(
            {
                "recipient": consumer.scope["recipient"],
                "sender": consumer.scope["sender"],
                "kwargs": consumer.scope["url_route"]["kwargs"],
                "subject": consumer.subject,
                "text": consumer.text,
                "raw": consumer.raw,
                "attempt": consumer.scope["attempt"],
                "scope": dict(consumer.scope),
                "attachments": consumer.attachments,
            }
        )


def make_app(inbox: Inbox) -> ASGIApp:
    """support@example.com and <device>@devices.example.com; a consumer that can fail."""

    class Support(AsyncEmailConsumer):
        async def receive(self, message: EmailMessage) -> None:
            if inbox.fail_times > 0:
                inbox.fail_times -= 1
                raise RuntimeError("database is down")
            if self.subject == "reject me":
                await self.reject(550, "5.7.1 No thanks")
                return
            inbox.record(self)

    return ProtocolTypeRouter(
        {
            "email": EmailToRouter(
                [
                    address(r"support@example\.com", Support.as_asgi()),
                    address(r"(?P<device>[\w-]+)@devices\.example\.com", Support.as_asgi()),
                    address(r"(?P<user>[^@]+)@bücher\.example", Support.as_asgi()),
                ]
            )
        }
    )


@asynccontextmanager
async def smtp_gateway(app: ASGIApp, **options: Any) -> AsyncIterator[int]:
    """Run a Gateway with only the SMTP adapter on a free port; yield the port."""
    settings = GatewaySettings(
        {
            "HTTP": {"ENABLED": False},
            "SHUTDOWN_TIMEOUT": 5,
            "ADAPTERS": {
                "smtp": {
                    "BACKEND": SMTP_ADAPTER,
                    "OPTIONS": {"PORT": 0, "HOSTNAME": "mx.example.com", **options},
                }
            },
        }
    )
    gateway = Gateway(app, settings=settings)
    ready = asyncio.Event()
    task = asyncio.create_task(gateway.serve(ready))
    waiter = asyncio.create_task(ready.wait())
    await asyncio.wait([task, waiter], timeout=TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    assert ready.is_set(), "the gateway did not get ready"
    smtp = next(item.address for item in gateway.listeners if item.protocol == "smtp")
    try:
        yield int(smtp.rsplit(":", 1)[1])
    finally:
        gateway.stop()
        assert await asyncio.wait_for(task, TIMEOUT) == 0


def message(
    subject: str = "Printer on fire",
    body: str = "Please help.",
    to: str = "support@example.com",
    sender: str = "alice@customer.test",
) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = to
    mail["Subject"] = subject
    mail["Message-ID"] = f"<{abs(hash((subject, body, to)))}@customer.test>"
    mail.set_content(body)
    return mail


def wire(mail: EmailMessage) -> bytes:
    """The message as a mail client sends it: CRLF line endings."""
    return mail.as_bytes(policy=policy.SMTP)


def send(
    port: int,
    raw: bytes,
    recipients: Sequence[str],
    sender: str = "alice@customer.test",
    **options: Any,
) -> dict[str, tuple[int, bytes]]:
    """Send with smtplib (blocking: run it in a thread); return the refused recipients."""
    with smtplib.SMTP("127.0.0.1", port, timeout=TIMEOUT) as client:
        return client.sendmail(sender, list(recipients), raw, **options)


async def asend(port: int, raw: bytes, recipients: Sequence[str], **kw: Any) -> Any:
    return await asyncio.to_thread(send, port, raw, recipients, **kw)
