"""Inbound PUBLISHes of the external-broker adapter: from gmqtt's read loop to the intake.

Each PUBLISH goes synchronously, in arrival order, into the intake; QoS 1/2 ones are
acknowledged when the intake reports the outcome. When the intake is full, the socket is no
longer read and the few messages already read wait here, in order, for room.
"""

from __future__ import annotations

import asyncio
from collections import deque
from functools import partial
from typing import Any

from gateway.pipeline import DispatcherClosed, OnDone, Outcome
from protocol_adapters.mqtt._compat_gmqtt import Client as _Client
from protocol_adapters.mqtt._compat_gmqtt import scope_properties
from protocol_adapters.mqtt.common import InboundMessage, MqttIntake, match_subscription
from protocol_adapters.mqtt.device_link import DeviceLink, copy_of

__all__ = ["InboundFlow"]


class InboundFlow:
    """gmqtt's delivery callbacks: PUBLISHes into the intake, parked while it is full."""

    def __init__(
        self,
        intake: MqttIntake,
        filters: list[str],
        stopping: asyncio.Event,
        link: DeviceLink | None = None,
    ) -> None:
        self.intake = intake
        self.filters = filters
        self.stopping = stopping
        self.link = link
        # Messages read while the intake was full, in arrival order, and the drainer for them.
        self.parked: deque[tuple[_Client, InboundMessage, OnDone | None]] = deque()
        self.drainer: asyncio.Task[None] | None = None
        self._paused: set[_Client] = set()
        self._subscription_cache: dict[str, str] = {}

    def on_qos0(
        self, client: _Client, topic: str, payload: bytes, qos: int, properties: dict[str, Any]
    ) -> None:
        """gmqtt's ``on_message``: a QoS 0 PUBLISH."""
        self.on_publish(client, topic, payload, 0, None, properties)

    def on_publish(
        self,
        client: _Client,
        topic: str,
        payload: bytes,
        qos: int,
        mid: int | None,
        properties: dict[str, Any],
    ) -> None:
        """One PUBLISH from gmqtt's read loop: to the intake now, or parked while it is full."""
        intake = self.intake
        if intake.closed or self.stopping.is_set() or client.lost.is_set():
            return  # not acknowledged: the broker keeps it for the next session
        message = self._message(topic, payload, qos, mid, properties)
        if self.link is not None:
            copy = copy_of(properties.get("subscription_identifier"))
            own = self.link.take(topic, payload, message.retain, message.properties, copy)
            if own is not None:  # the gateway's own (an answer, a status): not the app's
                done = None if mid is None else partial(client.acknowledge, qos, mid)
                self.link.spawn(own, done)
                return
        on_done = None if mid is None else partial(_acknowledge, client, qos, mid)
        if not self.parked and intake.try_submit(message, on_done):
            return
        # Full: stop reading this socket and queue what was already read, in order.
        self.parked.append((client, message, on_done))
        # Every time: asyncio's StreamReader resumes the transport when its own buffer drains.
        self._paused.add(client)
        client.pause_reading(True)
        if self.drainer is None:
            self.drainer = asyncio.create_task(self._drain_parked(intake))

    async def _drain_parked(self, intake: MqttIntake) -> None:
        try:
            while self.parked:
                client, message, on_done = self.parked[0]
                # A QoS 1/2 message of a lost connection comes again on the next one; a slot
                # freed since is taken at once, without the coroutines of submit().
                wanted = on_done is None or not client.lost.is_set()
                if wanted and not intake.try_submit(message, on_done):
                    await intake.submit(message, on_done)
                self.parked.popleft()
        except DispatcherClosed:
            self.parked.clear()  # stopping: never acknowledged, so the broker keeps them
        finally:
            self.drainer = None
            for paused in self._paused:
                paused.pause_reading(False)
            self._paused.clear()

    def _message(
        self, topic: str, payload: bytes, qos: int, mid: int | None, properties: dict[str, Any]
    ) -> InboundMessage:
        return InboundMessage(
            topic=topic,
            payload=payload,
            qos=qos,  # type: ignore[arg-type]  # gmqtt parsed it from two bits
            retain=bool(properties["retain"]),
            dup=bool(properties["dup"]),
            message_id=mid,
            subscription=self._subscription_of(topic),
            # gmqtt always adds "dup" and "retain"; anything more is MQTT 5 properties.
            properties=scope_properties(properties) if len(properties) > 2 else {},
        )

    def _subscription_of(self, topic: str) -> str:
        found = self._subscription_cache.get(topic)
        if found is None:
            if len(self._subscription_cache) >= 10_000:
                self._subscription_cache.clear()  # a bound, not an LRU: topics are few or many
            found = match_subscription(self.filters, topic) or "#"
            self._subscription_cache[topic] = found
        return found


def _acknowledge(client: _Client, qos: int, mid: int, outcome: Outcome) -> None:
    # Handled or dead-lettered: either way the message is ours now, the broker may forget it.
    client.acknowledge(qos, mid)
