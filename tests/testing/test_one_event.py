"""The one-event communicators run applications exactly as the adapters do."""

from __future__ import annotations

import pytest

from gateway.exceptions import UnknownMessageType
from gateway.testing import EmailCommunicator, MqttCommunicator
from gateway.types import Message, Receive, Scope, Send

MAIL = b"From: a@example.com\r\nTo: support@example.com\r\nSubject: hi\r\n\r\nbody\r\n"


async def test_an_email_app_sending_another_event_fails_as_in_the_adapter() -> None:
    # The communicator used to drop such events where the SMTP/IMAP intake raises.
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.send", "text": "oops"})

    with pytest.raises(UnknownMessageType, match=r"websocket\.send"):
        await EmailCommunicator(app, MAIL).deliver()


async def test_a_second_receive_gives_the_disconnect_event_in_every_protocol() -> None:
    seen: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(await receive())
        if scope["type"] == "mqtt":
            return  # the MQTT runner's second receive waits for the adapter to stop
        seen.append(await receive())

    await EmailCommunicator(app, MAIL).deliver()
    await MqttCommunicator(app, "devices/d1/telemetry", b"1").deliver()
    assert [event["type"] for event in seen] == [
        "email.message",
        "email.disconnect",
        "mqtt.message",
    ]
