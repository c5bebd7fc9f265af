from __future__ import annotations

import pytest

from gateway.consumers import AsyncSmsConsumer, SmsConsumer
from gateway.testing import SmsCommunicator
from gateway.types import SmsMedia
from routers.sms import SMSFromRouter, phone


class EchoConsumer(AsyncSmsConsumer):
    async def receive(self, body: str) -> None:
        await self.reply(f"{self.sender} -> {self.recipient}: {body}")
        for item in self.media:
            await self.reply(item["content_type"])


class SyncEchoConsumer(SmsConsumer):
    def receive(self, body: str) -> None:
        self.reply(body.upper())
        self.send("+447700900999", f"forwarded: {body}", media_urls=["https://example.com/a.png"])


class RouteConsumer(AsyncSmsConsumer):
    async def receive(self, body: str) -> None:
        await self.reply(self.scope["url_route"]["kwargs"]["prefix"])
        await self.send(self.sender, "thanks", from_="+15005550006")


async def test_async_consumer_replies_with_sender_recipient_and_media() -> None:
    media: list[SmsMedia] = [{"url": "https://example.com/m.jpg", "content_type": "image/jpeg"}]
    communicator = SmsCommunicator(
        EchoConsumer.as_asgi(), "+44 7700 900123", "+15005550006", "hello 👋", media=media
    )
    result = await communicator.receive_result()
    assert result.replies == ["+447700900123 -> +15005550006: hello 👋", "image/jpeg"]
    assert result.sent == []


async def test_sync_consumer_replies_and_sends() -> None:
    communicator = SmsCommunicator(SyncEchoConsumer.as_asgi(), "+12125550123", "+15005550006", "hi")
    result = await communicator.receive_result()
    assert result.replies == ["HI"]
    assert result.sent == [
        {
            "type": "sms.send",
            "to": "+447700900999",
            "body": "forwarded: hi",
            "media_urls": ["https://example.com/a.png"],
        }
    ]


async def test_consumer_behind_a_router_sees_the_matched_prefix() -> None:
    app = SMSFromRouter([phone("+1416", RouteConsumer.as_asgi())])
    communicator = SmsCommunicator(app, "whatsapp:+14165550123", "+15005550006", "x")
    assert communicator.scope["whatsapp"] is True
    result = await communicator.receive_result()
    assert result.replies == ["+1416"]
    assert result.sent == [
        {"type": "sms.send", "to": "+14165550123", "body": "thanks", "from": "+15005550006"}
    ]


async def test_long_bodies_arrive_whole() -> None:
    body = "é" * 1600
    result = await SmsCommunicator(
        SyncEchoConsumer.as_asgi(), "+12125550123", "+15005550006", body
    ).receive_result()
    assert result.replies == [body.upper()]


async def test_a_failing_consumer_raises_out_of_the_communicator() -> None:
    class Broken(AsyncSmsConsumer):
        async def receive(self, body: str) -> None:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await SmsCommunicator(Broken.as_asgi(), "+1212", "+1500", "x").receive_result()
