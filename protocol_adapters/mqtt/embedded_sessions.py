"""MQTT sessions of the embedded broker: what outlives a connection, and outbound delivery.

A session holds a client's subscriptions, the QoS 1/2 messages sent to it and not yet
acknowledged (resent with DUP on reconnect, MQTT-4.4.0-1), those waiting for a free slot
or for the client to come back (bounded in count and bytes: the oldest is dropped, as
Mosquitto's ``max_queued_messages`` does), and the inbound QoS 2 packet ids it must not
hand over twice.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from typing import Protocol

from protocol_adapters.mqtt.wire import PUBACK, PUBCOMP, PUBREC, PUBREL, ack, encode_publish

__all__ = ["Link", "Outgoing", "QueueLimits", "Session"]

logger = logging.getLogger("gateway.mqtt")


class Link(Protocol):
    """The connection a session is attached to, as the session writes to it."""

    def write(self, data: bytes) -> None: ...

    def writable(self) -> bool:
        """Whether the socket's send buffer has room (QoS 0 is dropped when it has none)."""
        ...

    def take_over(self) -> None:
        """Close this connection: a newer one of the same login took its client id."""
        ...


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message for one session, at the QoS it is delivered with."""

    topic: bytes
    payload: bytes
    qos: int
    retain: bool = False

    @property
    def size(self) -> int:
        return len(self.topic) + len(self.payload)


@dataclass(frozen=True, slots=True)
class QueueLimits:
    max_inflight: int = 20
    max_messages: int = 1000
    max_bytes: int = 16 * 1024 * 1024


class Session:
    """One client id's session; `link` is its connection while it is connected.

    Its queue and packet-id sets are made on first use: an idle device's session holds none.
    """

    __slots__ = (
        "_handling",
        "_last_id",
        "_queue",
        "_received",
        "clean",
        "client_id",
        "inflight",
        "limits",
        "link",
        "owner",
        "queued_bytes",
        "releasing",
        "subscriptions",
    )

    def __init__(self, client_id: str, owner: str, *, clean: bool, limits: QueueLimits) -> None:
        self.client_id = client_id
        self.owner = owner
        """The login that holds this client id: another login may not take it over."""
        self.clean = clean
        self.limits = limits
        self.link: Link | None = None
        self.subscriptions: dict[str, int] = {}
        self.inflight: dict[int, Outgoing] = {}
        """Sent, waiting for PUBACK (QoS 1) or PUBREC (QoS 2), in the order sent."""
        self.releasing: dict[int, None] = {}
        """QoS 2 messages whose PUBREC came: PUBREL sent, waiting for PUBCOMP."""
        self._queue: deque[Outgoing] | None = None
        self.queued_bytes = 0
        self._received: set[int] | None = None
        self._handling: set[int] | None = None
        self._last_id = 0

    @property
    def queue(self) -> deque[Outgoing]:
        """Messages waiting for a free slot in the window or for the client to come back."""
        if self._queue is None:
            self._queue = deque()
        return self._queue

    @property
    def received(self) -> set[int]:
        """Inbound QoS 2 packet ids acknowledged with PUBREC, until their PUBREL."""
        if self._received is None:
            self._received = set()
        return self._received

    @property
    def handling(self) -> set[int]:
        """Inbound QoS 1/2 packet ids the application has and has not finished."""
        if self._handling is None:
            self._handling = set()
        return self._handling

    # --- connection --------------------------------------------------------------------------

    def attach(self, link: Link) -> None:
        """A connection took the session: resend what it had in flight, then what waited."""
        self.link = link
        for packet_id, message in self.inflight.items():
            link.write(_publish(message, packet_id, dup=True))
        for packet_id in self.releasing:
            link.write(ack(PUBREL, packet_id))
        self._pump()

    def detach(self) -> None:
        self.link = None

    def send(self, data: bytes) -> None:
        """Write a control packet (an acknowledgement) if the client is connected."""
        if self.link is not None:
            self.link.write(data)

    # --- outbound ----------------------------------------------------------------------------

    def deliver(self, message: Outgoing) -> int:
        """Send or queue a message; return how many queued messages were dropped for it."""
        link = self.link
        if message.qos == 0:
            if link is not None and link.writable():
                link.write(_publish(message, None, dup=False))
            return 0  # QoS 0 is never queued for a client that is away, as in Mosquitto
        if link is not None and not self._queue and self._window_open():
            self._send(link, message)
            return 0
        return self._enqueue(message)

    def _enqueue(self, message: Outgoing) -> int:
        limits, dropped = self.limits, 0
        self.queue.append(message)
        self.queued_bytes += message.size
        while len(self.queue) > limits.max_messages or self.queued_bytes > limits.max_bytes:
            oldest = self.queue.popleft()
            self.queued_bytes -= oldest.size
            dropped += 1
        return dropped

    def _window_open(self) -> bool:
        return len(self.inflight) + len(self.releasing) < self.limits.max_inflight

    def _send(self, link: Link, message: Outgoing) -> None:
        packet_id = self._next_id()
        self.inflight[packet_id] = message
        link.write(_publish(message, packet_id, dup=False))

    def _pump(self) -> None:
        link = self.link
        while link is not None and self._queue and self._window_open():
            message = self._queue.popleft()
            self.queued_bytes -= message.size
            if message.qos == 0:
                link.write(_publish(message, None, dup=False))
            else:
                self._send(link, message)

    def _next_id(self) -> int:
        taken = self.inflight.keys() | self.releasing.keys()
        packet_id = self._last_id
        while True:
            packet_id = packet_id % 65535 + 1
            if packet_id not in taken:
                self._last_id = packet_id
                return packet_id

    def puback(self, packet_id: int) -> None:
        """The client acknowledged a QoS 1 message."""
        if self.inflight.pop(packet_id, None) is not None:
            self._pump()

    def pubrec(self, packet_id: int) -> None:
        """The client received a QoS 2 message: release it."""
        if self.inflight.pop(packet_id, None) is not None:
            self.releasing[packet_id] = None
        if packet_id in self.releasing:
            self.send(ack(PUBREL, packet_id))

    def pubcomp(self, packet_id: int) -> None:
        """The client completed a QoS 2 message."""
        if self.releasing.pop(packet_id, None) is not None:
            self._pump()

    # --- inbound -----------------------------------------------------------------------------

    def acknowledge(self, qos: int, packet_id: int) -> None:
        """An inbound message was handled: PUBACK it, or PUBREC it and remember its id."""
        if self._handling is not None:
            self._handling.discard(packet_id)
        if qos == 2:
            self.received.add(packet_id)
            self.send(ack(PUBREC, packet_id))
        elif qos == 1:
            self.send(ack(PUBACK, packet_id))

    def pubrel(self, packet_id: int) -> None:
        """The client released an inbound QoS 2 message: it may reuse the id."""
        if self._received is not None:
            self._received.discard(packet_id)
        self.send(ack(PUBCOMP, packet_id))


def _publish(message: Outgoing, packet_id: int | None, *, dup: bool) -> bytes:
    return encode_publish(
        message.topic, message.payload, message.qos, message.retain, dup, packet_id
    )
