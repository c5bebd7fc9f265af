"""Requests to devices, served by an MQTT adapter (docs/specs/mqtt.md, *Requests to devices*).

A caller anywhere sends ``mqtt.request`` on `REQUEST_CHANNEL`; the adapter whose ``COMMANDS``
option is set takes it, publishes the command with a correlation id (MQTT 5: response topic
and correlation data; MQTT 3.1.1: the id as the command topic's last level), and sends the
caller the device's answer, or its timeout, on the caller's own channel; a caller on this
process's event loop calls `CommandService.request` instead and gets the outcome on a future.
Answers come in on the response topic, which the adapter subscribes to itself.

The history (`CommandStore`) is written off the round trip: every change is queued, and one
writer records whatever queued up meanwhile in one batch, so a database write costs neither
the caller's latency nor one transaction per command.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gateway.mqtt import MqttPublishError, PublishFunc, make_publish_event
from gateway.mqtt_requests import (
    REQUEST_CHANNEL,
    CommandChange,
    load_command_store,
    serve_locally,
)
from gateway.types import Message, MqttProperties, MqttRequestEvent
from protocol_adapters.mqtt.common import receive_until
from protocol_adapters.mqtt.device_options import CommandsOptions

__all__ = ["CommandService"]

logger = logging.getLogger("gateway.mqtt")
HISTORY_DELAY = 0.25
"""Seconds the history writer lets changes gather before it writes them."""
HISTORY_SLICE = 5000
"""Changes recorded in one call of the store (one transaction), at most."""
HISTORY_ATTEMPTS = 5
"""Writes of the same changes before they are dropped (logged), one every HISTORY_DELAY."""
_REQUEST_KEYS = ("request_id", "device_id", "command", "payload", "qos", "timeout", "reply_channel")


Reply = str | asyncio.Future[Mapping[str, Any]]
"""Where a request's outcome goes: the caller's channel, or its future in this process."""


@dataclass
class _Waiting:
    reply: Reply
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
        self._changes: list[CommandChange] = []
        self._queued = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._failed = 0
        """Failed writes in a row."""

    @property
    def filters(self) -> list[str]:
        """What to subscribe to for the answers."""
        return [self.options.response_topic.filter()]

    # --- requests -----------------------------------------------------------------------------

    async def serve(self, stop: asyncio.Event) -> None:
        """Take requests from `REQUEST_CHANNEL` until `stop` is set, in arrival order."""
        from gateway.layers import get_channel_layer

        self._layer = get_channel_layer(self.alias)
        if self._layer is None:
            logger.warning(
                "no channel layer %r: gateway.mqtt.request() cannot reach MQTT", self.alias
            )
            return
        self._writer = asyncio.ensure_future(self._write_history())
        leave = serve_locally(self.alias, self)
        try:
            async for message in receive_until(self._layer, REQUEST_CHANNEL, stop):
                # Publishing queues the PUBLISH: it does not wait.
                await self._start(message, str(message.get("reply_channel", "")))
        finally:
            leave()

    async def request(self, event: MqttRequestEvent) -> Mapping[str, Any]:
        """A caller in this process: the outcome, without the channel layer's two hops."""
        outcome: asyncio.Future[Mapping[str, Any]] = asyncio.get_running_loop().create_future()
        await self._start(dict(event), outcome)
        return await outcome

    async def _start(self, message: Message, reply: Reply) -> None:
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
            await self._send(reply, _failed(request_id, str(exc)))
            return
        timeout = float(message["timeout"])
        self._note(
            "sent",
            request_id,
            device_id=device_id,
            command=command,
            topic=topic,
            payload=event["payload"],
            timeout=timeout,
        )
        loop = asyncio.get_running_loop()
        timer = loop.call_later(timeout, self._expire, request_id, timeout)
        self.waiting[request_id] = _Waiting(reply, timer)
        try:
            await self.publish(event)
        except Exception as exc:
            logger.exception("publishing the command %s to %s failed", request_id, topic)
            if self.waiting.pop(request_id, None) is not None:
                timer.cancel()
                await self._send(reply, _failed(request_id, str(exc)))

    def _expire(self, request_id: str, timeout: float) -> None:
        waiting = self.waiting.pop(request_id, None)
        if waiting is not None:
            self._spawn(self._timed_out(request_id, waiting.reply, timeout))

    async def _timed_out(self, request_id: str, reply: Reply, timeout: float) -> None:
        self._note("timed_out", request_id)
        event = {"type": "mqtt.request.timeout", "request_id": request_id, "timeout": timeout}
        await self._send(reply, event)

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
        self._note("answered", request_id, payload=payload, in_time=waiting is not None)
        if waiting is not None:
            event = {
                "type": "mqtt.response",
                "request_id": request_id,
                "payload": payload,
                "properties": dict(properties),
            }
            await self._send(waiting.reply, event)
        else:
            logger.info("%s answered command %s after its timeout", device_id, request_id)

    # --- the history --------------------------------------------------------------------------

    def _note(self, kind: Any, request_id: str, **fields: Any) -> None:
        at = datetime.now(UTC)
        self._changes.append(CommandChange(kind, request_id, at, **fields))
        self._queued.set()

    async def _write_history(self) -> None:
        """Record what queued up since the last write, in one batch, over and over."""
        while True:
            await self._queued.wait()
            # A command and its answer mostly land in one batch then: one INSERT, no UPDATE.
            await asyncio.sleep(HISTORY_DELAY)
            self._queued.clear()
            await self._flush()

    async def _flush(self) -> None:
        changes, self._changes = self._changes, []
        # A command and its answer in one call are written once; the slices bound a transaction.
        for start in range(0, len(changes), HISTORY_SLICE):
            if await self._record(changes[start : start + HISTORY_SLICE]):
                self._failed = 0
                continue
            self._failed += 1
            if self._failed < HISTORY_ATTEMPTS:
                # A locked or unreachable database: the changes wait for the next write, in
                # order, in front of those that came since.
                self._changes[:0] = changes[start:]
                self._queued.set()
                return
            logger.error(
                "dropped %d changes of the command history after %d failed writes",
                len(changes) - start,
                self._failed,
            )
            self._failed = 0
            return

    async def _record(self, changes: list[CommandChange]) -> bool:
        """Write `changes`; False when the store failed (nothing of them written)."""
        try:
            unknown = await self.store.record(changes)
        except Exception:
            logger.exception("recording %d changes of the command history failed", len(changes))
            return False
        for request_id in unknown:
            logger.warning("dropped an answer to an unknown command %r", request_id)
        return True

    # --- plumbing -----------------------------------------------------------------------------

    async def _send(self, reply: Reply, event: Mapping[str, Any]) -> None:
        if not isinstance(reply, str):
            if not reply.done():  # else its caller gave up waiting
                reply.set_result(event)
            return
        if self._layer is None:
            return
        try:
            await self._layer.send(reply, dict(event))
        except Exception:
            logger.exception("sending the outcome of a command to %s failed", reply)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        """Cancel the timers and whatever is still running; write the rest of the history."""
        for waiting in self.waiting.values():
            waiting.timer.cancel()
        self.waiting.clear()
        for task in [*self._tasks, *([self._writer] if self._writer else [])]:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._writer is not None:
            # A batch being written when cancelled is finished by its worker thread anyway.
            await asyncio.gather(self._writer, return_exceptions=True)
        await self._flush()
        close = getattr(self.store, "aclose", None)  # optional: a store may hold a connection
        if close is not None:
            await close()


def _failed(request_id: str, error: str) -> dict[str, Any]:
    return {"type": "mqtt.request.failed", "request_id": request_id, "error": error}
