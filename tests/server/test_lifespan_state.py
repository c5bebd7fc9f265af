"""The lifespan state reaches the scopes of every adapter (docs/specs: ``scope["state"]``).

Each adapter once built its scopes without it; a state set at startup must be in the scope
of an MQTT message (embedded broker), of an email (SMTP) and of a text message (Twilio
webhook), as it is for HTTP.
"""

from __future__ import annotations

import asyncio
import smtplib
from typing import Any

from gateway.conf import GatewaySettings
from gateway.server import Gateway
from gateway.types import Receive, Scope, Send
from routers import EmailToRouter, ProtocolTypeRouter, address
from tests.mqtt.embedded_support import WAIT, mosquitto_pub
from tests.sms.support import inbound, running_gateway

MAIL = (
    b"From: a@example.com\r\nTo: support@example.com\r\nSubject: hi\r\n"
    b"Message-ID: <s1@example.com>\r\n\r\nx\r\n"
)


class StatefulApp:
    """Sets ``state["pool"]`` at startup; records the state of every other scope."""

    def __init__(self) -> None:
        self.states: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                event = await receive()
                if event["type"] == "lifespan.startup":
                    scope["state"]["pool"] = "ready"
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        await receive()
        await self.states.put(dict(scope.get("state", {})))


async def test_an_mqtt_scope_carries_the_lifespan_state() -> None:
    app = StatefulApp()
    options = {"PORT": 0, "AUTH": "anonymous", "ACL": None, "SUBSCRIPTIONS": ["devices/#"]}
    adapters = {"mqtt": {"BACKEND": "protocol_adapters.mqtt.EmbeddedBroker", "OPTIONS": options}}
    settings = GatewaySettings({"HTTP": {"ENABLED": False}, "ADAPTERS": adapters})
    gateway = Gateway(app, settings=settings)
    ready = asyncio.Event()
    serving = asyncio.create_task(gateway.serve(ready))
    await asyncio.wait_for(ready.wait(), WAIT)
    try:
        port = int(gateway.listeners[0].address.rsplit(":", 1)[1])
        code, err = await mosquitto_pub(port, "-t", "devices/d1/telemetry", "-m", "1", "-q", "1")
        assert code == 0, err
        assert await asyncio.wait_for(app.states.get(), WAIT) == {"pool": "ready"}
    finally:
        gateway.stop()
        assert await asyncio.wait_for(serving, WAIT) == 0


class WithLifespan:
    """Middleware-shaped: answers lifespan itself, sends the rest to `app` (an email router)."""

    def __init__(self, inner: StatefulApp) -> None:
        self._lifespan = inner
        self.app = ProtocolTypeRouter({"email": EmailToRouter([address(r".*", inner)])})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        target = self._lifespan if scope["type"] == "lifespan" else self.app
        await target(scope, receive, send)


def _send_mail(port: int) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=WAIT) as client:
        client.sendmail("a@example.com", ["support@example.com"], MAIL)


async def test_an_email_scope_carries_the_lifespan_state() -> None:
    app = StatefulApp()
    options = {"PORT": 0, "STORE": False}
    adapters = {"smtp": {"BACKEND": "protocol_adapters.smtp.SMTPAdapter", "OPTIONS": options}}
    settings = GatewaySettings({"HTTP": {"ENABLED": False}, "ADAPTERS": adapters})
    gateway = Gateway(WithLifespan(app), settings=settings)
    ready = asyncio.Event()
    serving = asyncio.create_task(gateway.serve(ready))
    await asyncio.wait_for(ready.wait(), WAIT)
    try:
        port = int(gateway.listeners[0].address.rsplit(":", 1)[1])
        await asyncio.to_thread(_send_mail, port)
        assert await asyncio.wait_for(app.states.get(), WAIT) == {"pool": "ready"}
    finally:
        gateway.stop()
        assert await asyncio.wait_for(serving, WAIT) == 0


async def test_an_sms_scope_carries_the_lifespan_state() -> None:
    app = StatefulApp()
    async with running_gateway(app) as running:
        response = await running.post(inbound("+447700900123"))
        assert response.status_code == 200
        assert await asyncio.wait_for(app.states.get(), WAIT) == {"pool": "ready"}
