"""The embedded broker's client connections: read-ahead backpressure and keep-alive.

amqtt's reader loop starts a task per packet and never waits for the broker to take the
message, so nothing inside amqtt stops it from reading a flooding publisher's socket. Every
connection therefore reads through a `GatedReader`: it counts the PUBLISH packets it lets
through, and stops reading (the kernel buffers fill, TCP pushes back on the publisher) while
``READ_AHEAD`` of them wait for the broker's delivery loop, which in turn waits for the
gateway's intake. It also enforces the keep-alive amqtt ignores: a client silent for 1.5
times its keep-alive is cut off, which makes amqtt publish its will.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from amqtt.adapters import ReaderAdapter

__all__ = ["READ_AHEAD", "Connection", "GatedReader", "PacketCounter"]

logger = logging.getLogger("gateway.mqtt")

READ_AHEAD: Final = 16
"""PUBLISH packets a connection may have read and not yet handed to the intake."""
KEEP_ALIVE_FACTOR: Final = 1.5
"""MQTT 3.1.1, 3.1.2.10: a server disconnects a client silent for 1.5 times its keep-alive."""
_PUBLISH: Final = 3


class PacketCounter:
    """Follows MQTT framing in the bytes read, to count complete PUBLISH packets cheaply."""

    def __init__(self, max_packet: int) -> None:
        self.max_packet = max_packet
        self.oversized = 0
        """The remaining length of a packet over `max_packet`; 0 while none was seen."""
        self._header: int | None = None
        self._length = 0
        self._shift = 0
        self._left = 0

    def feed(self, data: bytes) -> int:
        """Account for `data`; return how many counted PUBLISH packets it completed."""
        done, index, size = 0, 0, len(data)
        while index < size:
            if self._left:
                step = min(self._left, size - index)
                self._left -= step
                index += step
                if not self._left:
                    done += self._finish()
                continue
            byte = data[index]
            index += 1
            if self._header is None:
                self._header, self._length, self._shift = byte, 0, 0
                continue
            self._length |= (byte & 0x7F) << self._shift
            self._shift += 7
            if byte & 0x80:
                continue
            if self._length > self.max_packet:
                self.oversized = self._length
            self._left = self._length
            if not self._left:
                done += self._finish()
        return done

    def _finish(self) -> int:
        header, self._header = self._header, None
        assert header is not None
        qos, dup = (header >> 1) & 3, header & 8
        # QoS 2 messages reach the broker only after PUBREL, which must stay readable; amqtt
        # drops QoS 0 with DUP set. Neither is counted: both would never be taken.
        return int(header >> 4 == _PUBLISH and (qos == 1 or (qos == 0 and not dup)))


@dataclass(eq=False)
class Connection:
    """One client connection, as the adapter tracks it."""

    peer: tuple[str, int]
    listener: str
    abort: Callable[[], None]
    max_packet: int
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.get_running_loop)
    client_id: str | None = None
    device_id: str | None = None
    """The device it authenticated as (AUTH "devices"), else None."""
    identity: str = ""
    """The id its topic ACL is built from: the device id, else the username or client id."""
    topics: tuple[str, ...] = ()
    """Its topic filters (ACL), {device_id} already replaced; () when it may use any topic."""
    backlog: int = 0
    peak_backlog: int = 0
    paused: bool = False
    stopping: bool = False
    last_read: float = 0.0
    keep_alive: float = 0.0
    _resume: asyncio.Event = field(default_factory=asyncio.Event)
    _timer: asyncio.TimerHandle | None = None

    def __post_init__(self) -> None:
        self.last_read = self.loop.time()

    def took_one(self) -> None:
        """The broker took one counted PUBLISH off this connection's queue."""
        self.backlog = max(0, self.backlog - 1)
        if self.backlog < READ_AHEAD:
            self._resume.set()

    async def wait_until_readable(self) -> None:
        """Wait while too many messages are read ahead, or for ever once stopping."""
        while self.stopping or self.backlog >= READ_AHEAD:
            self.paused = True
            self._resume.clear()
            await self._resume.wait()
        if self.paused:
            self.paused = False
            self.last_read = self.loop.time()  # waiting on us is not the client's silence

    def stop_reading(self) -> None:
        """Read nothing more from this client (the gateway is stopping)."""
        self.stopping = True

    def start_keep_alive(self, seconds: float) -> None:
        """Enforce the keep-alive the client asked for in CONNECT (0: none)."""
        self.keep_alive = seconds
        if seconds > 0:
            self._schedule(self.last_read + seconds * KEEP_ALIVE_FACTOR)

    def close(self) -> None:
        """Forget the keep-alive timer; the connection is gone."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _schedule(self, when: float) -> None:
        self._timer = self.loop.call_at(when, self._check_keep_alive)

    def _check_keep_alive(self) -> None:
        limit = self.keep_alive * KEEP_ALIVE_FACTOR
        if self.paused or self.stopping:
            self._schedule(self.loop.time() + limit)
        elif self.loop.time() - self.last_read >= limit:
            self._timer = None
            logger.warning(
                "mqtt client %r (%s:%s) silent for %.1fs (keep-alive %gs): disconnecting",
                self.client_id,
                *self.peer,
                limit,
                self.keep_alive,
            )
            self.abort()
        else:
            self._schedule(self.last_read + limit)


class GatedReader(ReaderAdapter):  # type: ignore[misc]  # amqtt ships no types
    """Reads for amqtt through a `Connection`'s gate; notes activity and read-ahead."""

    def __init__(self, inner: ReaderAdapter, connection: Connection) -> None:
        self.inner = inner
        self.connection = connection
        self.counter = PacketCounter(connection.max_packet)

    async def read(self, n: int = -1) -> bytes:
        connection = self.connection
        await connection.wait_until_readable()
        data: bytes = await self.inner.read(n)
        connection.last_read = connection.loop.time()
        completed = self.counter.feed(data)
        if completed:
            connection.backlog += completed
            connection.peak_backlog = max(connection.peak_backlog, connection.backlog)
        if self.counter.oversized:
            logger.warning(
                "mqtt client %r (%s:%s) sent a %d-byte packet, over the limit: disconnecting",
                connection.client_id,
                *connection.peer,
                self.counter.oversized,
            )
            connection.abort()
            return b""  # amqtt reads that as the end of the stream
        return data

    def feed_eof(self) -> None:
        self.inner.feed_eof()
