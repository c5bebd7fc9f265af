"""`AsyncConsumer` and `SyncConsumer`: one instance per scope, one method per message type."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from asgiref.sync import async_to_sync

from gateway import tracing
from gateway.db import database_sync_to_async
from gateway.exceptions import ImproperlyConfiguredGateway, StopConsumer, UnknownMessageType
from gateway.layers import BaseChannelLayer, get_channel_layer
from gateway.layers.memory import InMemoryChannelLayer
from gateway.types import Message, Receive, Scope, Send

logger = logging.getLogger("gateway.consumers")

DEFAULT_CHANNEL_LAYER = "default"
_MEMORY_RECEIVE = InMemoryChannelLayer.receive


def get_handler_name(message: Mapping[str, Any]) -> str:
    """The method that handles a message: type ``"chat.message"`` -> ``chat_message``.

    A type whose method name would start with ``_`` (``"_private"``, ``".private"``) is
    refused, so a message can never call a private method.
    """
    message_type = message.get("type")
    if not isinstance(message_type, str):
        raise UnknownMessageType("Incoming message has no 'type' attribute (a string).")
    name = message_type.replace(".", "_")
    if name.startswith("_"):
        raise UnknownMessageType(
            f"Malformed type in message (leading underscore): {message_type!r}."
        )
    return name


def _direct_receiver(layer: BaseChannelLayer | None) -> InMemoryChannelLayer | None:
    """The layer, when it is the in-memory one with its own receive (not a subclass's)."""
    if isinstance(layer, InMemoryChannelLayer) and type(layer).receive is _MEMORY_RECEIVE:
        return layer
    return None


class ConsumerApplication:
    """The ASGI application `as_asgi()` returns: a new consumer instance for every scope."""

    def __init__(self, consumer_class: type[AsyncConsumer], initkwargs: dict[str, Any]) -> None:
        self.consumer_class = consumer_class
        self.consumer_initkwargs = initkwargs
        functools.update_wrapper(self, consumer_class, updated=())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        consumer = self.consumer_class(**self.consumer_initkwargs)
        await consumer(scope, receive, send)

    def __repr__(self) -> str:
        return f"<{self.consumer_class.__qualname__}.as_asgi()>"


def _check_initkwargs(cls: type[AsyncConsumer], initkwargs: Mapping[str, Any]) -> None:
    """Accept class attributes and parameters the class's own ``__init__`` names, like Django."""
    parameters = inspect.signature(cls.__init__).parameters
    named = {
        name
        for name, parameter in parameters.items()
        if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)
    }
    for key in initkwargs:
        if not hasattr(cls, key) and key not in named:
            raise TypeError(
                f"{cls.__qualname__}.as_asgi() received an invalid keyword {key!r}: as_asgi() "
                "only accepts arguments that are already attributes of the class."
            )


class AsyncConsumer:
    """Base consumer: dispatches client and channel layer messages to ``async`` methods."""

    _sync: ClassVar[bool] = False
    #: Which entry of ``CHANNEL_LAYERS`` this consumer talks to.
    channel_layer_alias: str = DEFAULT_CHANNEL_LAYER
    #: Groups joined on WebSocket connect and left on disconnect.
    groups: list[str] = []
    #: The scope carries exactly one event (an MQTT message, a mail, an SMS): handle it and
    #: end, without waiting on the client and the channel layer side by side.
    one_event_scope: ClassVar[bool] = False

    scope: Scope
    channel_layer: BaseChannelLayer | None
    base_send: Callable[[Message], Any]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        for key, value in kwargs.items():
            setattr(self, key, value)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one scope until the client leaves or a handler raises `StopConsumer`."""
        self.scope = scope
        self.groups = list(self.groups or ())
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.base_send = async_to_sync(send) if self._sync else send
        self._joined_groups: list[str] = []
        # What the dispatch loop waits for (none for a one-event scope): see _dispatch_loop.
        self._bell: asyncio.Future[Message | None] | None = None
        try:
            if self.one_event_scope:
                await self._dispatch_traced(await receive())
            else:
                await self._dispatch_loop(receive)
        except StopConsumer:
            pass
        finally:
            await self._clean_up()

    @property
    def channel_name(self) -> str:
        """This consumer's own channel on the layer, created on first use."""
        name: str | None = getattr(self, "_channel_name", None)
        if name is None:
            name = self._channel_name = self._require_layer().new_channel_name()
            self._wake_dispatch_loop()
        return name

    async def dispatch(self, message: Message) -> None:
        """Call the handler method named for the message's type."""
        await self._handler_for(message)(message)

    async def send(self, message: Message) -> None:
        """Send a message to the client."""
        await self.base_send(message)

    @classmethod
    def as_asgi(cls, **initkwargs: Any) -> ConsumerApplication:
        """An ASGI application that serves each scope with ``cls(**initkwargs)``."""
        _check_initkwargs(cls, initkwargs)
        return ConsumerApplication(cls, initkwargs)

    async def _dispatch_traced(self, message: Message) -> None:
        """`dispatch` in a span when tracing; handlers never see the reserved trace key."""
        carrier = None
        if tracing.TRACE_KEY in message:  # a traced sender's layer message, traced here or not
            message, carrier = tracing.split_message(message)
        if tracing.tracer is None:
            await self.dispatch(message)
            return
        handler = str(message.get("type", "")).replace(".", "_")
        with tracing.consumer_span(self, handler, self.scope, carrier):
            await self.dispatch(message)

    def _handler_for(self, message: Message) -> Callable[[Message], Any]:
        name = get_handler_name(message)
        handler: Callable[[Message], Any] | None = getattr(self, name, None)
        if not callable(handler):
            raise UnknownMessageType(
                f"No handler for message type {message['type']} on consumer "
                f"{type(self).__qualname__}: define a method named {name!r} to handle "
                f"{message['type']!r} messages."
            )
        return handler

    def _require_layer(self) -> BaseChannelLayer:
        if not hasattr(self, "scope"):
            raise RuntimeError(
                f"{type(self).__qualname__} has a channel only while it serves a scope."
            )
        if self.channel_layer is None:
            raise ImproperlyConfiguredGateway(
                f"{type(self).__qualname__} needs a channel layer for channel_name and "
                f"groups, but CHANNEL_LAYERS configures no layer {self.channel_layer_alias!r}."
            )
        return self.channel_layer

    def _wake_dispatch_loop(self) -> None:
        """Tell the dispatch loop to start receiving from the new channel."""
        bell = self._bell
        if bell is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is bell.get_loop():
            self._ring()
        else:
            # A sync handler runs in a worker thread; futures are not thread-safe.
            bell.get_loop().call_soon_threadsafe(self._ring)

    def _ring(self, _: object = None) -> None:
        """Wake the dispatch loop (the client has a message, or the channel was created)."""
        bell = self._bell
        if bell is not None and not bell.done():
            bell.set_result(None)

    async def _receive_from_layer(self) -> Message:
        assert self.channel_layer is not None
        return await self.channel_layer.receive(self.channel_name)

    async def _dispatch_loop(self, receive: Receive) -> None:
        """Await the client and (once it exists) the layer channel; dispatch one at a time.

        The loop waits on one future, the bell. The in-memory layer hands the channel's next
        message straight to it, so a message costs one loop turn from `group_send` to its
        handler; the client's next message and a new channel ring it empty. Other layers'
        receives run as a task that rings it.
        """
        loop = asyncio.get_running_loop()
        client: asyncio.Future[Message] = asyncio.ensure_future(receive())
        client.add_done_callback(self._ring)
        direct = _direct_receiver(self.channel_layer)
        layer: asyncio.Future[Message] | None = None  # the receive task of another layer
        bell: asyncio.Future[Message | None] | None = None
        listening: str | None = None  # the channel whose in-memory receiver the bell is
        try:
            while True:
                bell = self._bell = loop.create_future()
                if client.done() or (layer is not None and layer.done()):
                    bell.set_result(None)
                name: str | None = getattr(self, "_channel_name", None)
                if name is not None and direct is not None:
                    if not bell.done():  # else the layer keeps its messages for the next turn
                        direct.receive_into(name, bell)
                        listening = name
                elif name is not None and layer is None:
                    layer = asyncio.ensure_future(self._receive_from_layer())
                    layer.add_done_callback(self._ring)
                from_layer = await bell
                if listening is not None and direct is not None and from_layer is None:
                    direct.forget_receiver(listening, bell)
                listening = None
                if client.done():
                    message = client.result()
                    await self._dispatch_traced(message)
                    client = asyncio.ensure_future(receive())
                    client.add_done_callback(self._ring)
                if from_layer is not None:
                    await self._dispatch_traced(from_layer)
                if layer is not None and layer.done():
                    message, layer = layer.result(), None
                    await self._dispatch_traced(message)
        finally:
            self._bell = None
            if listening is not None and direct is not None and bell is not None:
                direct.forget_receiver(listening, bell)  # puts back a message handed to it
                bell.cancel()
            pending = [task for task in (client, layer) if task is not None]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _join_groups(self) -> None:
        """Add this consumer's channel to each of its ``groups``."""
        if not self.groups:
            return
        layer = self._require_layer()
        for group in self.groups:
            await layer.group_add(group, self.channel_name)
            self._joined_groups.append(group)

    async def _leave_groups(self) -> None:
        """Remove this consumer's channel from every group it joined."""
        while self._joined_groups:
            group = self._joined_groups[-1]
            assert self.channel_layer is not None
            await self.channel_layer.group_discard(group, self.channel_name)
            self._joined_groups.pop()

    async def _clean_up(self) -> None:
        """Leave joined groups even when a handler failed, without hiding its error."""
        if not self._joined_groups:
            return
        try:
            await self._leave_groups()
        except Exception:
            logger.exception(
                "%s could not leave groups %s", type(self).__qualname__, self._joined_groups
            )


class SyncConsumer(AsyncConsumer):
    """Consumer whose handlers are plain methods, run in a thread with Django's DB handling."""

    _sync = True

    async def dispatch(self, message: Message) -> None:
        """Run the handler for the message in the worker thread."""
        await database_sync_to_async(self._dispatch_in_thread)(message)

    def _dispatch_in_thread(self, message: Message) -> None:
        self._handler_for(message)(message)

    def send(self, message: Message) -> None:  # type: ignore[override]
        """Send a message to the client (blocks the worker thread until it is queued)."""
        self.base_send(message)
