"""Requests to devices, served by an MQTT adapter (docs/specs/mqtt.md, *Requests to devices*).

A caller anywhere sends ``mqtt.request`` on `REQUEST_CHANNEL`; the adapter whose ``COMMANDS``
option is set takes it, records it, publishes the command with a correlation id (MQTT 5:
response topic and correlation data; MQTT 3.1.1: the id as the command topic's last level),
and sends the caller the device's answer, or its timeout, on the caller's own channel.
Answers come in on the response topic, which the adapter subscribes to itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.mqtt import MqttPublishError, PublishFunc, make_publish_event
from gateway.mqtt_requests import REQUEST_CHANNEL, load_command_store
from gateway.types import Message, MqttProperties
from protocol_adapters.mqtt.common import receive_until
from protocol_adapters.mqtt.device_options import CommandsOptions

__all__ = ["CommandService"]

logger = logging.getLogger("gateway.mqtt")
_REQUEST_KEYS = ("request_id", "device_id", "command", "payload", "qos", "timeout", "reply_channel")


@dataclass
class _Waiting:
    reply_channel: str
    timer: asyncio.TimerHandle


class CommandService:
    """Publishes commands from `REQUEST_CHANNEL` and routes the devices' answers back."""

    def __init__(
        self,
        options: CommandsOptions,
        publish: PublishFunc,
        *,
        mqtt5: bool,
        alias: str,
        max_payload: int,
    ) -> None:
        self.options = options
        self.publish = publish
        self.mqtt5 = mqtt5
        self.alias = alias
        self.max_payload = max_payload
        self.store = load_command_store(options.store)
        self.waiting: dict[str, _Waiting] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._layer: Any = None

    @property
    def filters(self) -> list[str]:
        """What to subscribe to for the answers."""
        return [self.options.response_topic.filter()]

    # --- requests -----------------------------------------------------------------------------

    async def serve(self, stop: asyncio.Event) -> None:
        """Take requests from `REQUEST_CHANNEL` until `stop` is set, each in its own task."""
        from gateway.layers import get_channel_layer

        self._layer = get_channel_layer(self.alias)
        if self._layer is None:
            logger.warning(
                "no channel layer %r: gateway.mqtt.request() cannot reach MQTT", self.alias
            )
            return
        async for message in receive_until(self._layer, REQUEST_CHANNEL, stop):
            self._spawn(self._start(message))

    async def _start(self, message: Message) -> None:
        if message.get("type") != "mqtt.request" or any(k not in message for k in _REQUEST_KEYS):
            logger.error("dropping a bad message on %s: %r", REQUEST_CHANNEL, message.get("type"))
            return
        request_id = str(message["request_id"])
        device_id, command = str(message["device_id"]), str(message["command"])
        response_topic = self.options.response_topic.fill(
            device_id=device_id, request_id=request_id
        )
        topic = self.options.topic.fill(device_id=device_id, command=command)
        properties: MqttProperties = {}
        if self.mqtt5:
            properties = {"response_topic": response_topic, "correlation_data": request_id.encode()}
        else:
            topic = f"{topic}/{request_id}"
        try:
            event = make_publish_event(
                topic,
                message["payload"],
                message["qos"],
                properties=dict(properties),
                max_payload=self.max_payload,
            )
        except MqttPublishError as exc:
            logger.error("dropping a bad request on %s: %s", REQUEST_CHANNEL, exc)
            await self._send(message["reply_channel"], _failed(request_id, str(exc)))
            return
        timeout = float(message["timeout"])
        try:
            await self.store.record_sent(
                request_id, device_id, command, topic, event["payload"], timeout
            )
        except Exception:
            logger.exception("recording the command %s to %s failed", request_id, device_id)
        loop = asyncio.get_running_loop()
        timer = loop.call_later(timeout, self._expire, request_id, timeout)
        self.waiting[request_id] = _Waiting(str(message["reply_channel"]), timer)
        try:
            await self.publish(event)
        except Exception as exc:
            logger.exception("publishing the command %s to %s failed", request_id, topic)
            if self.waiting.pop(request_id, None) is not None:
                timer.cancel()
                await self._send(message["reply_channel"], _failed(request_id, str(exc)))

    def _expire(self, request_id: str, timeout: float) -> None:
        waiting = self.waiting.pop(request_id, None)
        if waiting is not None:
            self._spawn(self._timed_out(request_id, waiting.reply_channel, timeout))

    async def _timed_out(self, request_id: str, reply_channel: str, timeout: float) -> None:
        try:
            await self.store.record_timeout(request_id)
        except Exception:
            logger.exception("recording the timeout of command %s failed", request_id)
        event = {"type": "mqtt.request.timeout", "request_id": request_id, "timeout": timeout}
        await self._send(reply_channel, event)

    # --- answers ------------------------------------------------------------------------------

    def answer(
        self, topic: str, payload: bytes, properties: MqttProperties
    ) -> Coroutine[Any, Any, None] | None:
        """For a message on the response topic: the coroutine that handles it; else None."""
        found = self.options.response_topic.match(topic)
        if found is None:
            return None
        return self._answered(found["request_id"], found["device_id"], payload, properties)

    async def _answered(
        self, request_id: str, device_id: str, payload: bytes, properties: MqttProperties
    ) -> None:
        waiting = self.waiting.pop(request_id, None)
        if waiting is not None:
            waiting.timer.cancel()
        try:
            known = await self.store.record_answer(request_id, payload, in_time=waiting is not None)
        except Exception:
            logger.exception("recording the answer to command %s failed", request_id)
            known = True
        if waiting is not None:
            event = {
                "type": "mqtt.response",
                "request_id": request_id,
                "payload": payload,
                "properties": dict(properties),
            }
            await self._send(waiting.reply_channel, event)
        elif known:
            logger.info(
                "%s answered command %s after its timeout (recorded)", device_id, request_id
            )
        else:
            logger.warning(
                "dropping an answer from %s to an unknown command %r", device_id, request_id
            )

    # --- plumbing -----------------------------------------------------------------------------

    async def _send(self, channel: str, event: Mapping[str, Any]) -> None:
        if self._layer is None:
            return
        try:
            await self._layer.send(channel, dict(event))
        except Exception:
            logger.exception("sending the outcome of a command to %s failed", channel)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        """Cancel the timers and whatever is still running."""
        for waiting in self.waiting.values():
            waiting.timer.cancel()
        self.waiting.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _failed(request_id: str, error: str) -> dict[str, Any]:
    return {"type": "mqtt.request.failed", "request_id": request_id, "error": error}
