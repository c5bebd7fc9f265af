"""The topology's consumers: each protocol's event is recorded, and readings go out live.

`PROCESS` (the environment's GATEWAY_PROCESS_NAME) names the process in what it records and
sends, so a test can tell which gateway handled an event and which one holds a WebSocket.
"""

from __future__ import annotations

import os
import socket
from email.message import EmailMessage
from typing import Any

from asgiref.sync import sync_to_async

from gateway import (
    AsyncConsumer,
    AsyncEmailConsumer,
    AsyncJsonMqttConsumer,
    AsyncJsonWebsocketConsumer,
    AsyncSmsConsumer,
)

from .models import Handling

PROCESS = os.environ.get("GATEWAY_PROCESS_NAME") or f"{socket.gethostname()}-{os.getpid()}"
GROUP = "readings"
MAIL_JOBS = "jobs.mail"


async def record(kind: str, key: str) -> None:
    """One row per handling, in the database every process shares."""
    await sync_to_async(Handling.objects.create)(kind=kind, key=key, process=PROCESS)


class ReadingConsumer(AsyncJsonMqttConsumer):
    """devices/<id>/readings: record the reading, then send it to every live feed."""

    async def receive_json(self, data: Any) -> None:
        reading = data if isinstance(data, dict) else {"value": data}
        device_id = self.scope["url_route"]["kwargs"]["device_id"]
        key = str(reading.get("id", ""))[:100]
        await record("reading", key)
        reading = {**reading, "device": device_id, "handled_by": PROCESS}
        await self.channel_layer.group_send(GROUP, {"type": "feed.reading", "reading": reading})


class FeedConsumer(AsyncJsonWebsocketConsumer):
    """/ws/readings/: says which process holds it, then streams every reading."""

    groups = [GROUP]

    async def connect(self) -> None:
        await self.accept()
        await self.send_json({"kind": "hello", "process": PROCESS})

    async def feed_reading(self, event: dict[str, Any]) -> None:
        """A reading some gateway handled."""
        await self.send_json({"kind": "reading", "process": PROCESS, **event["reading"]})


class TextConsumer(AsyncSmsConsumer):
    """Any text message: answered with what it said and who answered."""

    async def receive(self, body: str) -> None:
        await self.reply(f"{PROCESS} got: {body[:100]}")


class MailConsumer(AsyncEmailConsumer):
    """ops@topology.example: accepted once a worker has the job (a durable channel)."""

    async def receive(self, message: EmailMessage) -> None:
        job = {"type": "mail.received", "message_id": self.message_id or "", "by": PROCESS}
        await self.channel_layer.send(MAIL_JOBS, job)


class MailJobConsumer(AsyncConsumer):
    """The `gateway worker` side of jobs.mail: records the mail."""

    async def mail_received(self, event: dict[str, Any]) -> None:
        """A mail one of the gateways accepted."""
        await record("mail", str(event["message_id"])[:100])
