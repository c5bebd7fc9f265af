from __future__ import annotations

from typing import Any, ClassVar

import pytest
from asgiref.sync import async_to_sync
from django.test import override_settings

from gateway.consumers import (
    AsyncJsonWebsocketConsumer,
    AsyncWebsocketConsumer,
    JsonWebsocketConsumer,
    WebsocketConsumer,
)
from gateway.exceptions import AcceptConnection, DenyConnection, ImproperlyConfiguredGateway
from gateway.testing import WebsocketCommunicator
from gateway.types import Message
from tests.consumers.support import CountingLayer


class AsyncEcho(AsyncWebsocketConsumer):
    closed_with: ClassVar[list[int]] = []

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data == "close":
            await self.close(code=4001, reason="asked to")
        elif text_data == "last":
            await self.send(text_data="bye", close=True)
        elif text_data is not None:
            await self.send(text_data=text_data.upper())
        else:
            assert bytes_data is not None
            await self.send(bytes_data=bytes_data[::-1])

    async def disconnect(self, code: int) -> None:
        self.closed_with.append(code)


class SyncEcho(WebsocketConsumer):
    closed_with: ClassVar[list[int]] = []

    def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data == "close":
            self.close(code=4001, reason="asked to")
        elif text_data == "last":
            self.send(text_data="bye", close=True)
        elif text_data is not None:
            self.send(text_data=text_data.upper())
        else:
            assert bytes_data is not None
            self.send(bytes_data=bytes_data[::-1])

    def disconnect(self, code: int) -> None:
        self.closed_with.append(code)


ECHOES = [AsyncEcho, SyncEcho]


@pytest.mark.parametrize("consumer", ECHOES)
async def test_text_and_binary_frames(consumer: Any) -> None:
    communicator = WebsocketCommunicator(consumer.as_asgi(), "/ws/?token=1")
    assert await communicator.connect() == (True, None)
    await communicator.send_to(text_data="hello")
    assert await communicator.receive_from() == "HELLO"
    await communicator.send_to(bytes_data=b"\x01\x02")
    assert await communicator.receive_from() == b"\x02\x01"
    assert await communicator.receive_nothing()
    consumer.closed_with.clear()
    await communicator.disconnect(code=4100)
    assert consumer.closed_with == [4100]


@pytest.mark.parametrize("consumer", ECHOES)
async def test_close_with_code_and_reason(consumer: Any) -> None:
    communicator = WebsocketCommunicator(consumer.as_asgi(), "/ws/")
    await communicator.connect()
    await communicator.send_to(text_data="close")
    closing = await communicator.receive_output()
    assert closing == {"type": "websocket.close", "code": 4001, "reason": "asked to"}
    await communicator.disconnect(code=4001)


@pytest.mark.parametrize("consumer", ECHOES)
async def test_send_then_close(consumer: Any) -> None:
    communicator = WebsocketCommunicator(consumer.as_asgi(), "/ws/")
    await communicator.connect()
    await communicator.send_to(text_data="last")
    assert await communicator.receive_from() == "bye"
    assert await communicator.receive_output() == {"type": "websocket.close"}
    await communicator.disconnect()


class AsyncGatekeeper(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        verdict = self.scope["path"].strip("/")
        if verdict == "deny":
            raise DenyConnection
        if verdict == "accept":
            raise AcceptConnection
        if verdict == "code":
            await self.close(code=4403)
        elif verdict == "protocol":
            await self.accept(self.scope["subprotocols"][-1], headers=[(b"x-room", b"7")])


class SyncGatekeeper(WebsocketConsumer):
    def connect(self) -> None:
        verdict = self.scope["path"].strip("/")
        if verdict == "deny":
            raise DenyConnection
        if verdict == "accept":
            raise AcceptConnection
        if verdict == "code":
            self.close(code=4403)
        elif verdict == "protocol":
            self.accept(self.scope["subprotocols"][-1], headers=[(b"x-room", b"7")])


GATEKEEPERS = [AsyncGatekeeper, SyncGatekeeper]


@pytest.mark.parametrize("consumer", GATEKEEPERS)
async def test_accept_and_deny(consumer: Any) -> None:
    app = consumer.as_asgi()
    assert await WebsocketCommunicator(app, "/deny/").connect() == (False, 1000)
    assert await WebsocketCommunicator(app, "/code/").connect() == (False, 4403)
    accepted = WebsocketCommunicator(app, "/accept/")
    assert await accepted.connect() == (True, None)
    await accepted.disconnect()


@pytest.mark.parametrize("consumer", GATEKEEPERS)
async def test_subprotocol_and_headers(consumer: Any) -> None:
    communicator = WebsocketCommunicator(
        consumer.as_asgi(), "/protocol/", subprotocols=["v1.chat", "v2.chat"]
    )
    assert await communicator.connect() == (True, "v2.chat")
    assert communicator.response_headers == [(b"x-room", b"7")]
    await communicator.disconnect()


async def test_send_needs_text_or_bytes() -> None:
    class Empty(AsyncWebsocketConsumer):
        async def receive(
            self, text_data: str | None = None, bytes_data: bytes | None = None
        ) -> None:
            await self.send()

    communicator = WebsocketCommunicator(Empty.as_asgi(), "/")
    await communicator.connect()
    await communicator.send_to(text_data="x")
    with pytest.raises(ValueError, match="one of bytes_data or text_data"):
        await communicator.wait()


class AsyncRoom(AsyncWebsocketConsumer):
    groups = ["room"]

    async def connect(self) -> None:
        await self.accept()
        await self.send(text_data=self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data == "fail":
            raise RuntimeError("consumer crashed")
        assert self.channel_layer is not None
        await self.channel_layer.group_send("room", {"type": "chat.message", "text": text_data})

    async def chat_message(self, message: Message) -> None:
        await self.send(text_data=message["text"])


class SyncRoom(WebsocketConsumer):
    groups = ["room"]

    def connect(self) -> None:
        self.accept()
        self.send(text_data=self.channel_name)

    def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data == "fail":
            raise RuntimeError("consumer crashed")
        assert self.channel_layer is not None
        async_to_sync(self.channel_layer.group_send)(
            "room", {"type": "chat.message", "text": text_data}
        )

    def chat_message(self, message: Message) -> None:
        self.send(text_data=message["text"])


ROOMS = [AsyncRoom, SyncRoom]


@pytest.mark.parametrize("consumer", ROOMS)
async def test_groups_joined_broadcast_and_left(consumer: Any, layer: CountingLayer) -> None:
    first = WebsocketCommunicator(consumer.as_asgi(), "/room/")
    second = WebsocketCommunicator(consumer.as_asgi(), "/room/")
    assert (await first.connect())[0]
    assert (await second.connect())[0]
    first_name = await first.receive_from()
    second_name = await second.receive_from()
    assert layer.members["room"] == {first_name, second_name}

    await first.send_to(text_data="hello all")
    assert await first.receive_from() == "hello all"
    assert await second.receive_from() == "hello all"

    await first.disconnect()
    assert layer.members["room"] == {second_name}
    await second.send_to(text_data="anyone?")
    assert await second.receive_from() == "anyone?"
    await second.disconnect()
    assert layer.members["room"] == set()


@pytest.mark.parametrize("consumer", ROOMS)
async def test_groups_left_when_a_handler_fails(consumer: Any, layer: CountingLayer) -> None:
    communicator = WebsocketCommunicator(consumer.as_asgi(), "/room/")
    await communicator.connect()
    name = await communicator.receive_from()
    assert layer.members["room"] == {name}
    await communicator.send_to(text_data="fail")
    with pytest.raises(RuntimeError, match="consumer crashed"):
        await communicator.wait()
    assert layer.members["room"] == set()


@pytest.mark.parametrize("consumer", ROOMS)
async def test_groups_without_a_layer(consumer: Any) -> None:
    with override_settings(CHANNEL_LAYERS={}):
        communicator = WebsocketCommunicator(consumer.as_asgi(), "/room/")
        await communicator.send_input({"type": "websocket.connect"})
        with pytest.raises(ImproperlyConfiguredGateway, match="channel layer"):
            await communicator.wait()


class AsyncJsonEcho(AsyncJsonWebsocketConsumer):
    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        await self.send_json({"got": content}, close=content == "bye")


class SyncJsonEcho(JsonWebsocketConsumer):
    def receive_json(self, content: Any, **kwargs: Any) -> None:
        self.send_json({"got": content}, close=content == "bye")


@pytest.mark.parametrize("consumer", [AsyncJsonEcho, SyncJsonEcho])
async def test_json_round_trip(consumer: Any) -> None:
    communicator = WebsocketCommunicator(consumer.as_asgi(), "/json/")
    await communicator.connect()
    await communicator.send_json_to({"temperature": 21.5, "tags": ["a", "b"]})
    assert await communicator.receive_json_from() == {
        "got": {"temperature": 21.5, "tags": ["a", "b"]}
    }
    await communicator.send_json_to("bye")
    assert await communicator.receive_json_from() == {"got": "bye"}
    assert (await communicator.receive_output())["type"] == "websocket.close"
    await communicator.disconnect()


@pytest.mark.parametrize("consumer", [AsyncJsonEcho, SyncJsonEcho])
async def test_json_consumer_refuses_binary_frames(consumer: Any) -> None:
    communicator = WebsocketCommunicator(consumer.as_asgi(), "/json/")
    await communicator.connect()
    await communicator.send_to(bytes_data=b"{}")
    with pytest.raises(ValueError, match="No text section"):
        await communicator.wait()


async def test_json_encoding_can_be_overridden() -> None:
    class Sorted(AsyncJsonEcho):
        @classmethod
        async def encode_json(cls, content: Any) -> str:
            import json

            return json.dumps(content, sort_keys=True, separators=(",", ":"))

    class SyncSorted(SyncJsonEcho):
        @classmethod
        def decode_json(cls, text_data: str) -> Any:
            return {"decoded": text_data}

    communicator = WebsocketCommunicator(Sorted.as_asgi(), "/json/")
    await communicator.connect()
    await communicator.send_json_to({"b": 1, "a": 2})
    assert await communicator.receive_from() == '{"got":{"a":2,"b":1}}'
    await communicator.disconnect()

    communicator = WebsocketCommunicator(SyncSorted.as_asgi(), "/json/")
    await communicator.connect()
    await communicator.send_to(text_data="raw")
    assert await communicator.receive_json_from() == {"got": {"decoded": "raw"}}
    await communicator.disconnect()
