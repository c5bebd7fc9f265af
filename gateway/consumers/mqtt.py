"""MQTT consumers, sync and async, raw and JSON: one instance handles one inbound message.

A consumer's scope lives for one message (docs/specs/mqtt.md), so ``groups`` are not joined:
use ``self.channel_layer`` to talk to other consumers. Returning from `receive` means the
message was handled; raising makes the adapter retry it, then dead-letter it. A `publish`
that cannot be sent (the external broker is unreachable) raises at the call and so does the
same, with the unsent message in the dead letter, unless the consumer chose
``on_reply_failure = "log"`` or ``on_failure="log"`` (gateway.replies).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from gateway import tracing
from gateway.consumers.base import AsyncConsumer, SyncConsumer
from gateway.mqtt import InvalidPayload, MqttPublishError, make_publish_event
from gateway.replies import ReplyFailure, failure_policy, mark, reply_failures
from gateway.types import Message, MqttPublishEvent, Scope

__all__ = ["AsyncJsonMqttConsumer", "AsyncMqttConsumer", "JsonMqttConsumer", "MqttConsumer"]


def _decode_json(scope: Scope, payload: bytes) -> Any:
    """The payload as JSON; InvalidPayload (never retried) when it is not UTF-8 JSON."""
    try:
        return json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidPayload(
            f"MQTT payload on topic {scope.get('topic')!r} is not UTF-8 JSON: {exc}"
        ) from None


def _publish_event(
    topic: str, payload: object, qos: int, retain: bool, properties: Mapping[str, Any] | None
) -> MqttPublishEvent:
    if tracing.tracer is not None:  # an MQTT 5 receiver continues the trace (traceparent)
        properties = tracing.inject_user_properties(properties)
    return make_publish_event(topic, payload, qos, retain, properties=properties)


def _reply_event(
    scope: Scope, payload: object, qos: int | None, properties: Mapping[str, Any] | None
) -> MqttPublishEvent:
    """The answer to an MQTT 5 request: to its response topic, with its correlation data."""
    request: Mapping[str, Any] = scope.get("properties") or {}
    topic = request.get("response_topic")
    if not topic:
        raise MqttPublishError(
            f"the message on {scope.get('topic')!r} has no response topic to reply to "
            "(only an MQTT 5 request carries one)"
        )
    if tracing.tracer is not None:  # the requester continues the trace (traceparent)
        properties = tracing.inject_user_properties(properties)
    answer = dict(properties or {})
    if "correlation_data" in request:
        answer["correlation_data"] = request["correlation_data"]
    return make_publish_event(
        topic, payload, scope["qos"] if qos is None else qos, properties=answer
    )


class _MqttScopeAttributes:
    """Read-only views of the scope keys every MQTT consumer uses."""

    scope: Scope
    #: A publish that cannot be sent fails the message ("fail": retried, then dead-lettered)
    #: or is only logged ("log"); ``on_failure=`` of one call overrides it.
    on_reply_failure: ReplyFailure = "fail"

    def _outgoing(
        self, event: MqttPublishEvent, on_failure: ReplyFailure | None
    ) -> tuple[Message, ReplyFailure]:
        policy = failure_policy(self.on_reply_failure, on_failure)
        return mark(dict(event), policy), policy

    @property
    def topic(self) -> str:
        """The topic the message was published to."""
        return str(self.scope["topic"])

    @property
    def qos(self) -> int:
        """The QoS the message arrived with."""
        return int(self.scope["qos"])

    @property
    def retain(self) -> bool:
        """Whether it is a retained message."""
        return bool(self.scope["retain"])

    @property
    def device_id(self) -> str | None:
        """The authenticated device that published it, when known."""
        device_id: str | None = self.scope.get("device_id")
        return device_id

    @property
    def properties(self) -> dict[str, Any]:
        """The message's MQTT 5 properties; ``{}`` over MQTT 3.1.1."""
        return dict(self.scope.get("properties") or {})

    @property
    def client_id(self) -> str | None:
        """The publisher's MQTT client id, when known."""
        client_id: str | None = self.scope.get("client_id")
        return client_id


class AsyncMqttConsumer(_MqttScopeAttributes, AsyncConsumer):
    """MQTT consumer with async hooks."""

    one_event_scope = True

    async def mqtt_message(self, message: Message) -> None:
        """Pass the payload to `receive`, then end the scope: the message is handled."""
        await self.receive(message["payload"])

    async def receive(self, payload: bytes) -> None:
        """Called once with the message's payload."""

    async def publish(
        self,
        topic: str,
        payload: object,
        qos: int = 0,
        retain: bool = False,
        *,
        properties: Mapping[str, Any] | None = None,
        on_failure: ReplyFailure | None = None,
    ) -> None:
        """Publish a message (bytes, str or a JSON-able value); MqttPublishError if invalid.

        A message that cannot be sent raises here unless `on_failure` (default: the class's
        ``on_reply_failure``) is ``"log"``.
        """
        event = _publish_event(topic, payload, qos, retain, properties)
        message, policy = self._outgoing(event, on_failure)
        with reply_failures(message, policy):
            await self.send(message)

    async def reply(
        self,
        payload: object,
        qos: int | None = None,
        *,
        properties: Mapping[str, Any] | None = None,
        on_failure: ReplyFailure | None = None,
    ) -> None:
        """Answer an MQTT 5 request on its response topic, with its correlation data.

        QoS defaults to the request's; MqttPublishError when the message has no response topic.
        """
        event = _reply_event(self.scope, payload, qos, properties)
        message, policy = self._outgoing(event, on_failure)
        with reply_failures(message, policy):
            await self.send(message)


class AsyncJsonMqttConsumer(AsyncMqttConsumer):
    """Async MQTT consumer whose payloads are JSON."""

    async def receive(self, payload: bytes) -> None:
        """Decode the payload and pass it to `receive_json`; InvalidPayload if not JSON."""
        await self.receive_json(_decode_json(self.scope, payload))

    async def receive_json(self, data: Any) -> None:
        """Called once with the decoded payload."""


class MqttConsumer(_MqttScopeAttributes, SyncConsumer):
    """MQTT consumer with plain hooks, run in a worker thread (the Django ORM works there)."""

    one_event_scope = True

    def mqtt_message(self, message: Message) -> None:
        """Pass the payload to `receive`, then end the scope: the message is handled."""
        self.receive(message["payload"])

    def receive(self, payload: bytes) -> None:
        """Called once with the message's payload."""

    def publish(
        self,
        topic: str,
        payload: object,
        qos: int = 0,
        retain: bool = False,
        *,
        properties: Mapping[str, Any] | None = None,
        on_failure: ReplyFailure | None = None,
    ) -> None:
        """Publish a message (bytes, str or a JSON-able value); MqttPublishError if invalid.

        A message that cannot be sent raises here unless `on_failure` (default: the class's
        ``on_reply_failure``) is ``"log"``.
        """
        event = _publish_event(topic, payload, qos, retain, properties)
        message, policy = self._outgoing(event, on_failure)
        with reply_failures(message, policy):
            self.send(message)

    def reply(
        self,
        payload: object,
        qos: int | None = None,
        *,
        properties: Mapping[str, Any] | None = None,
        on_failure: ReplyFailure | None = None,
    ) -> None:
        """Answer an MQTT 5 request on its response topic, with its correlation data.

        QoS defaults to the request's; MqttPublishError when the message has no response topic.
        """
        event = _reply_event(self.scope, payload, qos, properties)
        message, policy = self._outgoing(event, on_failure)
        with reply_failures(message, policy):
            self.send(message)


class JsonMqttConsumer(MqttConsumer):
    """Sync MQTT consumer whose payloads are JSON."""

    def receive(self, payload: bytes) -> None:
        """Decode the payload and pass it to `receive_json`; InvalidPayload if not JSON."""
        self.receive_json(_decode_json(self.scope, payload))

    def receive_json(self, data: Any) -> None:
        """Called once with the decoded payload."""
