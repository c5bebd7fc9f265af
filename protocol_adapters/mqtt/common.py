"""What both MQTT adapters share: the inbound message, the intake, subscriptions, publishing.

An adapter (embedded broker or external-broker client) only translates its library's packets:

* it parses its ``OPTIONS`` with `MqttOptions.from_options` (after `check_common_options`),
* subscribes to `subscriptions_for(app, options)`,
* turns every inbound PUBLISH into an `InboundMessage` and awaits
  ``MqttIntake.submit(message, on_done)`` (which waits while ``MAX_IN_FLIGHT`` messages are
  unfinished: that is the backpressure), acknowledging the message in ``on_done``,
* runs `serve_publish_channel` so ``gateway.mqtt.publish`` reaches its connection,
* and on stop awaits ``MqttIntake.aclose(timeout)``.

The shared options (`MqttOptions`, `check_common_options`) live in
`protocol_adapters.mqtt.options` and are re-exported here. Nothing here imports gmqtt.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, cast

from gateway import tracing
from gateway.mqtt import (
    MAX_PAYLOAD,
    PUBLISH_CHANNEL,
    BrokerKind,
    InboundMessage,
    MqttPublishError,
    PublishFunc,
    build_mqtt_scope,
    match_subscription,
    run_mqtt_app,
    validate_publish_event,
)
from gateway.pipeline import KeyedDispatcher, OnDone, Outcome
from gateway.routes import find_branch
from gateway.types import MqttPublishEvent, MqttScope
from protocol_adapters.mqtt.options import (
    COMMON_OPTION_KEYS,
    DEFAULT_OPTIONS,
    MqttOptions,
    check_common_options,
)

if TYPE_CHECKING:
    from gateway.adapters import AdapterContext
    from gateway.types import Message

__all__ = [
    "COMMON_OPTION_KEYS",
    "DEFAULT_OPTIONS",
    "BrokerKind",
    "InboundMessage",
    "MqttIntake",
    "MqttOptions",
    "PublishFunc",
    "build_mqtt_scope",
    "check_common_options",
    "match_subscription",
    "receive_until",
    "run_mqtt_app",
    "serve_publish_channel",
    "subscriptions_for",
]

logger = logging.getLogger("gateway.mqtt")

PROTOCOL: Final = "mqtt"


# --- the intake ------------------------------------------------------------------------------


class MqttIntake:
    """Runs the application on inbound messages: ordered per topic, bounded, retried."""

    def __init__(
        self,
        context: AdapterContext,
        *,
        broker: BrokerKind,
        options: MqttOptions,
        publish: PublishFunc,
        state: Mapping[str, Any] | None = None,
    ) -> None:
        self.app = context.app
        self.adapter = context.name
        self.broker: BrokerKind = broker
        self.options = options
        self.publish = publish
        # The lifespan state (docs/specs: scope["state"]), a shallow copy per scope.
        self.state = state if state is not None else context.state
        self._stopped = asyncio.Event()
        self.dispatcher = KeyedDispatcher(
            PROTOCOL,
            max_in_flight=options.max_in_flight,
            retry=options.retry,
            dead_letter=context.dead_letter,
            metrics=context.metrics,
        )

    @property
    def in_flight(self) -> int:
        """Messages accepted and not yet handled or dead-lettered."""
        return self.dispatcher.in_flight

    @property
    def closed(self) -> bool:
        """True once `aclose` started; submit then raises DispatcherClosed."""
        return self.dispatcher.closed

    async def submit(self, message: InboundMessage, on_done: OnDone | None = None) -> None:
        """Accept a message, waiting while MAX_IN_FLIGHT are unfinished; on_done after the app."""
        scope = self.scope_for(message)
        await self.dispatcher.submit(
            message.topic,
            self._handler(message, scope),
            scope=dict(scope),
            payload=message.payload,
            on_done=on_done,
        )

    def try_submit(self, message: InboundMessage, on_done: OnDone | None = None) -> bool:
        """Accept a message if a slot is free now; False when MAX_IN_FLIGHT are unfinished."""
        scope = self.scope_for(message)
        return self.dispatcher.try_submit(
            message.topic,
            self._handler(message, scope),
            scope=dict(scope),
            payload=message.payload,
            on_done=on_done,
        )

    async def run(self, message: InboundMessage) -> Outcome:
        """Submit a message and wait until it is handled or dead-lettered."""
        scope = self.scope_for(message)
        handler = self._handler(message, scope)
        return await self.dispatcher.run(
            message.topic, handler, scope=dict(scope), payload=message.payload
        )

    async def aclose(self, timeout: float = 10.0) -> int:
        """Stop accepting, let accepted messages finish for `timeout`; return how many were cut."""
        # Applications waiting on a second receive() get mqtt.disconnect now.
        self._stopped.set()
        return await self.dispatcher.aclose(timeout)

    def scope_for(self, message: InboundMessage) -> MqttScope:
        """The scope of a message's first attempt."""
        return build_mqtt_scope(message, adapter=self.adapter, broker=self.broker, state=self.state)

    def _handler(self, message: InboundMessage, first: MqttScope) -> Callable[[], Awaitable[None]]:
        attempts = 0

        async def handle() -> None:
            nonlocal attempts
            attempts += 1
            # The first attempt's scope already holds its copy of the state. Every retry is a
            # fresh scope with DUP set (the app may have seen it) and a fresh state copy.
            scope: MqttScope = first
            if attempts > 1:
                scope = {**first, "dup": True}
                if self.state is not None:
                    scope["state"] = copy.copy(dict(self.state))
            await run_mqtt_app(
                self.app,
                scope,
                message.payload,
                self.publish,
                max_payload=self.options.max_payload,
                stopped=self._stopped,
            )

        return handle


# --- subscriptions ---------------------------------------------------------------------------


def subscriptions_for(app: object, options: MqttOptions | None = None) -> list[str]:
    """The filters to subscribe to: OPTIONS["SUBSCRIPTIONS"], else derived from the routes.

    Returns [] when the application has no ``"mqtt"`` entry in its ProtocolTypeRouter, and
    ``["#"]`` when its mqtt application is not a router that can list its filters.
    """
    if options is not None and options.subscriptions is not None:
        return list(options.subscriptions)
    found = find_branch(app, PROTOCOL)
    if found is None:
        return []
    lister = getattr(found, "mqtt_subscriptions", None)
    if callable(lister):
        return list(lister())
    logger.warning(
        "the mqtt application %r lists no topics (no MqttTopicRouter); subscribing to '#'", found
    )
    return ["#"]


# --- serving gateway.mqtt.publish ------------------------------------------------------------


async def _receive_or_stop(
    layer: Any, channel: str, stopping: asyncio.Future[Any]
) -> Message | None:
    receiving = asyncio.ensure_future(layer.receive(channel))
    try:
        await asyncio.wait({receiving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not receiving.done():
            receiving.cancel()
            await asyncio.gather(receiving, return_exceptions=True)
    if receiving.cancelled():
        return None
    message: Message = receiving.result()  # raises the layer's error, if any
    return message


async def receive_until(
    layer: Any, channel: str, stop: asyncio.Event, max_backoff: float = 5.0
) -> AsyncIterator[Message]:
    """Every message sent to `channel` until `stop` is set; layer errors are logged, retried."""
    backoff = 0.0
    # One waiter on `stop` for the whole loop, not one per message.
    stopping = asyncio.ensure_future(stop.wait())
    try:
        while not stop.is_set():
            try:
                message = await _receive_or_stop(layer, channel, stopping)
            except Exception:
                backoff = min(max_backoff, backoff * 2 or 0.05)
                logger.exception("receiving from %s failed; retrying in %.2fs", channel, backoff)
                await _sleep_or_stop(backoff, stop)
                continue
            backoff = 0.0
            if message is not None:
                yield message
    finally:
        stopping.cancel()
        await asyncio.gather(stopping, return_exceptions=True)


async def _publish_one(publish: PublishFunc, message: Message, max_payload: int) -> None:
    try:
        event = validate_publish_event(message, max_payload)
    except MqttPublishError as exc:
        logger.error("dropping a bad message on %s: %s", PUBLISH_CHANNEL, exc)
        return
    if tracing.TRACE_KEY in message:  # sent in a span: MQTT 5 receivers continue its trace
        event = cast(MqttPublishEvent, tracing.carry_to_publish(event, message))
    try:
        await publish(event)
    except Exception:
        logger.exception("publishing to %r from %s failed", event["topic"], PUBLISH_CHANNEL)


async def serve_publish_channel(
    publish: PublishFunc,
    *,
    alias: str = "default",
    stop: asyncio.Event,
    max_payload: int = MAX_PAYLOAD,
    max_backoff: float = 5.0,
) -> None:
    """Publish every message sent to `PUBLISH_CHANNEL` on layer `alias`, until `stop` is set.

    Bad messages are logged and dropped; layer errors are logged and retried with a short
    backoff, so the loop only ends when `stop` is set (or when no channel layer exists).
    """
    from gateway.layers import get_channel_layer

    layer = get_channel_layer(alias)
    if layer is None:
        logger.warning("no channel layer %r: gateway.mqtt.publish() will not reach MQTT", alias)
        return
    async for message in receive_until(layer, PUBLISH_CHANNEL, stop, max_backoff):
        await _publish_one(publish, message, max_payload)


async def _sleep_or_stop(delay: float, stop: asyncio.Event) -> None:
    try:
        async with asyncio.timeout(delay):
            await stop.wait()
    except TimeoutError:
        pass
