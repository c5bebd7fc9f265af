from __future__ import annotations

import asyncio
import re
import threading
from typing import Any, ClassVar

import pytest
from django.test import override_settings

from gateway.consumers import AsyncConsumer, AsyncWebsocketConsumer, SyncConsumer
from gateway.exceptions import ImproperlyConfiguredGateway, StopConsumer, UnknownMessageType
from gateway.layers import get_channel_layer
from gateway.testing import ApplicationCommunicator, WebsocketCommunicator
from gateway.types import Message
from tests.consumers.support import COUNTING_BACKEND, CountingLayer, counting_layer


def channel_scope() -> dict[str, Any]:
    return {"type": "channel", "channel": "work"}


class Echo(AsyncConsumer):
    async def chat_message_sent(self, message: Message) -> None:
        await self.send({"type": "reply", "text": message["text"], "path": self.scope["channel"]})

    async def work_stop(self, message: Message) -> None:
        await self.send({"type": "stopping"})
        raise StopConsumer


async def test_dispatch_by_dotted_type() -> None:
    communicator = ApplicationCommunicator(Echo.as_asgi(), channel_scope())
    await communicator.send_input({"type": "chat.message.sent", "text": "hi"})
    assert await communicator.receive_output() == {"type": "reply", "text": "hi", "path": "work"}
    await communicator.send_input({"type": "chat.message.sent", "text": "again"})
    assert (await communicator.receive_output())["text"] == "again"
    communicator.stop()


async def test_stop_consumer_ends_cleanly() -> None:
    communicator = ApplicationCommunicator(Echo.as_asgi(), channel_scope())
    await communicator.send_input({"type": "work.stop"})
    assert await communicator.receive_output() == {"type": "stopping"}
    await communicator.wait()  # returns: StopConsumer is not an error
    assert communicator.future.done()
    assert communicator.future.exception() is None


async def test_unknown_message_type_names_type_and_consumer() -> None:
    communicator = ApplicationCommunicator(Echo.as_asgi(), channel_scope())
    await communicator.send_input({"type": "no.such.thing"})
    with pytest.raises(UnknownMessageType) as excinfo:
        await communicator.wait()
    assert "'no.such.thing'" in str(excinfo.value)
    assert "Echo" in str(excinfo.value)
    assert "no_such_thing" in str(excinfo.value)
    assert isinstance(excinfo.value, ValueError)


@pytest.mark.parametrize("message", [{"type": "_private"}, {"no_type": 1}, {"type": 5}])
async def test_malformed_types_are_refused(message: Message) -> None:
    communicator = ApplicationCommunicator(Echo.as_asgi(), channel_scope())
    await communicator.send_input(message)
    with pytest.raises(UnknownMessageType):
        await communicator.wait()


async def test_handler_exception_propagates() -> None:
    class Broken(AsyncConsumer):
        async def work_do(self, message: Message) -> None:
            raise RuntimeError("handler failed")

    communicator = ApplicationCommunicator(Broken.as_asgi(), channel_scope())
    await communicator.send_input({"type": "work.do"})
    with pytest.raises(RuntimeError, match="handler failed"):
        await communicator.wait()


class Configurable(AsyncConsumer):
    greeting = "hello"
    instances: ClassVar[list[Configurable]] = []

    def __init__(self, *args: Any, punctuation: str = ".", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.punctuation = punctuation
        self.instances.append(self)

    async def work_greet(self, message: Message) -> None:
        await self.send({"type": "greeting", "text": self.greeting + self.punctuation})


async def test_as_asgi_builds_one_instance_per_scope_with_initkwargs() -> None:
    app = Configurable.as_asgi(greeting="hi", punctuation="!")
    assert app.consumer_class is Configurable
    assert app.consumer_initkwargs == {"greeting": "hi", "punctuation": "!"}
    assert app.__name__ == "Configurable"
    Configurable.instances.clear()
    for _ in range(2):
        communicator = ApplicationCommunicator(app, channel_scope())
        await communicator.send_input({"type": "work.greet"})
        assert await communicator.receive_output() == {"type": "greeting", "text": "hi!"}
        communicator.stop()
    assert len(Configurable.instances) == 2
    assert Configurable.instances[0] is not Configurable.instances[1]
    assert Configurable.greeting == "hello"  # the class is untouched


def test_as_asgi_refuses_unknown_initkwargs() -> None:
    with pytest.raises(TypeError, match=re.escape("Configurable.as_asgi() received an invalid")):
        Configurable.as_asgi(greting="typo")


async def test_sync_consumer_runs_handlers_in_a_thread() -> None:
    loop_thread = threading.get_ident()

    class Threaded(SyncConsumer):
        def work_where(self, message: Message) -> None:
            self.send({"type": "here", "in_loop_thread": threading.get_ident() == loop_thread})

    communicator = ApplicationCommunicator(Threaded.as_asgi(), channel_scope())
    await communicator.send_input({"type": "work.where"})
    assert await communicator.receive_output() == {"type": "here", "in_loop_thread": False}
    communicator.stop()


async def test_sync_consumer_unknown_type() -> None:
    communicator = ApplicationCommunicator(SyncConsumer.as_asgi(), channel_scope())
    await communicator.send_input({"type": "nothing.here"})
    with pytest.raises(UnknownMessageType, match="SyncConsumer"):
        await communicator.wait()


class NamedConsumer(AsyncConsumer):
    """Reports its channel name when asked, then relays layer messages to the client."""

    async def work_name(self, message: Message) -> None:
        await self.send({"type": "name", "name": self.channel_name})

    async def layer_ping(self, message: Message) -> None:
        await self.send({"type": "pong", "n": message["n"]})


async def test_consumer_that_never_uses_its_channel_makes_none(layer: CountingLayer) -> None:
    communicator = ApplicationCommunicator(Echo.as_asgi(), channel_scope())
    await communicator.send_input({"type": "chat.message.sent", "text": "hi"})
    await communicator.receive_output()
    await communicator.send_input({"type": "work.stop"})
    await communicator.receive_output()
    await communicator.wait()
    assert layer.names_made == []
    assert layer.receives_started == 0


async def test_websocket_consumer_without_channel_use_makes_none(layer: CountingLayer) -> None:
    class Plain(AsyncWebsocketConsumer):
        async def receive(
            self, text_data: str | None = None, bytes_data: bytes | None = None
        ) -> None:
            await self.send(text_data=f"echo {text_data}")

    communicator = WebsocketCommunicator(Plain.as_asgi(), "/ws/")
    assert await communicator.connect() == (True, None)
    await communicator.send_to(text_data="a")
    assert await communicator.receive_from() == "echo a"
    await communicator.disconnect()
    assert layer.names_made == []
    assert layer.receives_started == 0


async def test_channel_created_on_first_use_and_receives(layer: CountingLayer) -> None:
    communicator = ApplicationCommunicator(NamedConsumer.as_asgi(), channel_scope())
    await communicator.send_input({"type": "work.name"})
    reply = await communicator.receive_output()
    assert layer.names_made == [reply["name"]]
    await layer.send(reply["name"], {"type": "layer.ping", "n": 1})
    await layer.send(reply["name"], {"type": "layer.ping", "n": 2})
    assert await communicator.receive_output() == {"type": "pong", "n": 1}
    assert await communicator.receive_output() == {"type": "pong", "n": 2}
    # The name is made once, however often it is read.
    await communicator.send_input({"type": "work.name"})
    assert (await communicator.receive_output())["name"] == reply["name"]
    assert len(layer.names_made) == 1
    communicator.stop()


async def test_channel_first_used_outside_a_handler_wakes_the_loop(layer: CountingLayer) -> None:
    class Background(AsyncConsumer):
        async def work_start(self, message: Message) -> None:
            self.task = asyncio.create_task(self.announce())

        async def announce(self) -> None:
            await asyncio.sleep(0)
            await self.send({"type": "name", "name": self.channel_name})

        async def layer_ping(self, message: Message) -> None:
            await self.send({"type": "pong"})

    communicator = ApplicationCommunicator(Background.as_asgi(), channel_scope())
    await communicator.send_input({"type": "work.start"})
    name = (await communicator.receive_output())["name"]
    # No client message arrives after this: only the wake-up lets the loop see the channel.
    await layer.send(name, {"type": "layer.ping"})
    assert await communicator.receive_output(timeout=5) == {"type": "pong"}
    communicator.stop()


async def test_channel_first_used_in_another_thread_wakes_the_loop(layer: CountingLayer) -> None:
    class FromThread(AsyncConsumer):
        async def work_start(self, message: Message) -> None:
            self.task = asyncio.create_task(self.announce())

        async def announce(self) -> None:
            name = await asyncio.to_thread(getattr, self, "channel_name")
            await self.send({"type": "name", "name": name})

        async def layer_ping(self, message: Message) -> None:
            await self.send({"type": "pong"})

    communicator = ApplicationCommunicator(FromThread.as_asgi(), channel_scope())
    await communicator.send_input({"type": "work.start"})
    name = (await communicator.receive_output())["name"]
    await layer.send(name, {"type": "layer.ping"})
    assert await communicator.receive_output(timeout=5) == {"type": "pong"}
    communicator.stop()


async def test_sync_consumer_channel_receives_layer_messages(layer: CountingLayer) -> None:
    class SyncNamed(SyncConsumer):
        def work_name(self, message: Message) -> None:
            self.send({"type": "name", "name": self.channel_name})

        def layer_ping(self, message: Message) -> None:
            self.send({"type": "pong"})

    communicator = ApplicationCommunicator(SyncNamed.as_asgi(), channel_scope())
    await communicator.send_input({"type": "work.name"})
    name = (await communicator.receive_output())["name"]
    await layer.send(name, {"type": "layer.ping"})
    assert await communicator.receive_output() == {"type": "pong"}
    communicator.stop()


async def test_channel_layer_alias() -> None:
    class OtherLayer(AsyncConsumer):
        channel_layer_alias = "other"

        async def work_check(self, message: Message) -> None:
            await self.send({"type": "checked", "same": self.channel_layer is expected})

    with counting_layer(other=COUNTING_BACKEND) as default:
        expected = get_channel_layer("other")
        assert expected is not default
        communicator = ApplicationCommunicator(OtherLayer.as_asgi(), channel_scope())
        await communicator.send_input({"type": "work.check"})
        assert await communicator.receive_output() == {"type": "checked", "same": True}
        communicator.stop()


async def test_channel_name_without_a_layer_is_a_clear_error() -> None:
    with override_settings(CHANNEL_LAYERS={}):
        communicator = ApplicationCommunicator(NamedConsumer.as_asgi(), channel_scope())
        await communicator.send_input({"type": "work.name"})
        with pytest.raises(ImproperlyConfiguredGateway, match="CHANNEL_LAYERS") as excinfo:
            await communicator.wait()
    assert "NamedConsumer" in str(excinfo.value)


def test_channel_name_outside_a_scope() -> None:
    with pytest.raises(RuntimeError, match="while it serves a scope"):
        _ = NamedConsumer().channel_name


async def test_a_one_event_scope_consumer_handles_one_event_and_ends() -> None:
    handled: list[dict[str, object]] = []
    calls = 0

    class OneShot(AsyncConsumer):
        one_event_scope = True

        async def thing_happened(self, message: dict[str, object]) -> None:
            handled.append(message)

    async def receive() -> dict[str, object]:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise AssertionError("a one-event scope must not be received from twice")
        return {"type": "thing.happened", "n": 1}

    async def send(message: dict[str, object]) -> None:
        raise AssertionError("nothing to send")

    await asyncio.wait_for(OneShot.as_asgi()({"type": "thing"}, receive, send), 5)
    assert handled == [{"type": "thing.happened", "n": 1}]
    assert calls == 1


async def test_a_group_message_reaches_its_handler_in_one_loop_turn() -> None:
    # The in-memory layer hands the message straight to the future the dispatch loop awaits:
    # no receive task and no asyncio.wait between group_send and the handler.
    seen: list[int] = []

    class Member(AsyncWebsocketConsumer):
        groups = ["turns"]

        async def note(self, message: Message) -> None:
            seen.append(message["n"])

    memory = {"default": {"BACKEND": "gateway.layers.InMemoryChannelLayer"}}
    with override_settings(CHANNEL_LAYERS=memory):
        communicator = WebsocketCommunicator(Member.as_asgi(), "/ws/")
        assert await communicator.connect() == (True, None)
        layer = get_channel_layer()
        assert layer is not None
        for n in (1, 2):
            await layer.group_send("turns", {"type": "note", "n": n})
            await asyncio.sleep(0)
            assert seen[-1:] == [n]
        await communicator.disconnect()
        assert layer._waiters == {}  # type: ignore[attr-defined]


async def test_a_client_message_first_leaves_the_group_message_waiting() -> None:
    seen: list[str] = []

    class Member(AsyncWebsocketConsumer):
        groups = ["both"]

        async def receive(
            self, text_data: str | None = None, bytes_data: bytes | None = None
        ) -> None:
            seen.append(f"client {text_data}")

        async def note(self, message: Message) -> None:
            seen.append(f"layer {message['n']}")
            await self.send(text_data="noted")

    memory = {"default": {"BACKEND": "gateway.layers.InMemoryChannelLayer"}}
    with override_settings(CHANNEL_LAYERS=memory):
        communicator = WebsocketCommunicator(Member.as_asgi(), "/ws/")
        assert await communicator.connect() == (True, None)
        layer = get_channel_layer()
        assert layer is not None
        await communicator.send_to(text_data="a")
        await layer.group_send("both", {"type": "note", "n": 1})
        assert await communicator.receive_from() == "noted"
        assert seen == ["client a", "layer 1"]
        await communicator.disconnect()


async def test_client_and_layer_messages_arriving_during_a_handler_are_all_handled() -> None:
    seen: list[str] = []
    release = asyncio.Event()

    class Busy(AsyncWebsocketConsumer):
        groups = ["busy"]

        async def receive(
            self, text_data: str | None = None, bytes_data: bytes | None = None
        ) -> None:
            seen.append(f"client {text_data}")
            await self.send(text_data=f"got {text_data}")

        async def note(self, message: Message) -> None:
            seen.append(f"layer {message['n']}")
            if message["n"] == 1:
                await release.wait()
            await self.send(text_data=f"noted {message['n']}")

    memory = {"default": {"BACKEND": "gateway.layers.InMemoryChannelLayer"}}
    with override_settings(CHANNEL_LAYERS=memory):
        communicator = WebsocketCommunicator(Busy.as_asgi(), "/ws/")
        assert await communicator.connect() == (True, None)
        layer = get_channel_layer()
        assert layer is not None
        await layer.group_send("busy", {"type": "note", "n": 1})
        await asyncio.sleep(0)
        # While the first handler waits: a client frame and a queued group message.
        await communicator.send_to(text_data="a")
        await layer.group_send("busy", {"type": "note", "n": 2})
        for _ in range(5):
            await asyncio.sleep(0)
        release.set()
        replies = {await communicator.receive_from() for _ in range(3)}
        assert replies == {"noted 1", "got a", "noted 2"}
        assert seen[0] == "layer 1"
        assert sorted(seen[1:]) == ["client a", "layer 2"]
        await communicator.disconnect()
