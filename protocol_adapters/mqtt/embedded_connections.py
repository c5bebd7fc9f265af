"""One client connection of the embedded broker: an asyncio protocol and its packet loop.

Bytes are split into packets as they arrive; a task handles them in order, awaiting the
adapter where it must (the login, the application's intake), and ends once no complete packet
is left: an idle connection holds no task, no timer and no empty containers, only its small
state (``__slots__``). While the task waits, unread bytes pile up to `READ_BUFFER`, then the
socket is no longer read and TCP pushes back on the client. The rules a server must enforce
are enforced here: a CONNECT first and only once, within ``CONNECT_TIMEOUT``; the keep-alive
(a client silent for 1.5 times it is cut off and its will published), both on the adapter's
shared `Deadlines`; any malformed packet closes the connection.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from typing import Any, Final, Protocol

from protocol_adapters.mqtt.embedded_broker import Broker, Login
from protocol_adapters.mqtt.embedded_deadlines import Deadlines
from protocol_adapters.mqtt.embedded_sessions import Session
from protocol_adapters.mqtt.wire import (
    CONNACK_ACCEPTED,
    CONNACK_BAD_PROTOCOL,
    CONNACK_ID_REJECTED,
    CONNECT,
    DISCONNECT,
    PINGREQ,
    PINGRESP,
    PUBACK,
    PUBCOMP,
    PUBLISH,
    PUBREC,
    PUBREL,
    SUBSCRIBE,
    UNSUBSCRIBE,
    Connect,
    Frame,
    FrameReader,
    MalformedPacket,
    Publish,
    Will,
    connack,
    decode_connect,
    decode_packet_id,
    decode_publish,
    decode_subscribe,
    decode_unsubscribe,
    suback,
    unsuback,
)

__all__ = ["READ_BUFFER", "Connection", "ConnectionHooks", "ConnectionSettings"]

logger = logging.getLogger("gateway.mqtt")

READ_BUFFER: Final = 64 * 1024
"""Unhandled bytes a connection holds before it stops reading its socket."""
WRITE_BUFFER: Final = 1024 * 1024
"""Unsent bytes past which QoS 0 messages to this client are dropped."""
KEEP_ALIVE_FACTOR: Final = 1.5
"""MQTT-3.1.2-24: a client silent for 1.5 times its keep-alive is disconnected."""
SUBSCRIBE_REFUSED: Final = 0x80


class ConnectionHooks(Protocol):
    """What a connection asks the adapter."""

    broker: Broker
    deadlines: Deadlines

    def admit(self, connection: Connection) -> bool: ...

    async def login(self, connection: Connection, connect: Connect) -> Login | int: ...

    def may_subscribe(self, connection: Connection, topic_filter: str) -> bool: ...

    async def connected(self, connection: Connection) -> None: ...

    async def inbound(self, connection: Connection, publish: Publish) -> None: ...

    async def closed(self, connection: Connection, will: Will | None) -> None: ...


@dataclass(frozen=True, slots=True)
class ConnectionSettings:
    max_packet: int
    connect_timeout: float = 10.0


class Connection(asyncio.Protocol):
    """One client: its socket, its login, its session, and the task handling its packets."""

    __slots__ = (
        "__weakref__",
        "_logging_in",
        "client_id",
        "deadline_slot",
        "done",
        "graceful",
        "hooks",
        "idle",
        "keep_alive",
        "last_read",
        "listener",
        "login",
        "loop",
        "lost",
        "paused",
        "peer",
        "reader",
        "session",
        "settings",
        "stopping",
        "task",
        "transport",
        "will",
    )

    def __init__(self, hooks: ConnectionHooks, listener: str, settings: ConnectionSettings):
        self.hooks = hooks
        self.listener = listener
        self.settings = settings
        self.loop = asyncio.get_running_loop()
        self.reader = FrameReader(settings.max_packet)
        self.transport: Any = None
        self.peer: tuple[str, int] = ("", 0)
        self.login: Login | None = None
        self.session: Session | None = None
        self.client_id: str | None = None
        self.will: Will | None = None
        self.keep_alive = 0.0
        self.last_read = self.loop.time()
        self.paused = False
        """Whether the socket is not read right now (too much unhandled, or stopping)."""
        self.stopping = False
        self.idle = True
        """No complete packet waits to be handled (the task waits for bytes)."""
        self.lost = False
        self.graceful = False
        """The client sent DISCONNECT: its will is discarded."""
        self.task: asyncio.Task[None] | None = None
        """The task handling packets, while there are some (or the connection is ending)."""
        self.done = False
        """Refused, or finished: no task is started for it any more."""
        self.deadline_slot: int | None = None
        """Kept by the adapter's `Deadlines` (the CONNECT timeout, then the keep-alive)."""
        self._logging_in = False

    @property
    def device_id(self) -> str | None:
        return self.login.device_id if self.login is not None else None

    @property
    def topics(self) -> tuple[str, ...]:
        return self.login.topics if self.login is not None else ()

    def describe(self) -> str:
        return f"{self.client_id!r} ({self.peer[0]}:{self.peer[1]})"

    # --- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            self.peer = (str(peer[0]), int(peer[1]))
        if not self.hooks.admit(self):
            self.transport.abort()
            self.lost = self.done = True
            return
        self.hooks.deadlines.add(self, self.last_read + self.settings.connect_timeout)

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        self.last_read = self.loop.time()
        if len(self.reader.buffer) > READ_BUFFER and not self.paused:
            self._pause()
        self._kick()

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._give_up_login()
        self._kick()

    # --- what the session and the adapter call -----------------------------------------------

    def write(self, data: bytes) -> None:
        if not self.lost and not self.transport.is_closing():
            self.transport.write(data)

    def writable(self) -> bool:
        return bool(self.transport.get_write_buffer_size() < WRITE_BUFFER)

    def take_over(self) -> None:
        logger.info("mqtt client %s taken over by a newer connection", self.describe())
        self.abort()

    def abort(self) -> None:
        """Close the socket at once; the packet task then ends (abnormally)."""
        if self.transport is not None:
            self.transport.abort()
        self.lost = True
        self._kick()

    def stop_reading(self) -> None:
        """Read nothing more from this client (the gateway is stopping)."""
        self.stopping = True
        self._pause()

    # --- the packet loop ---------------------------------------------------------------------

    def _kick(self) -> None:
        """Start the packet task unless it runs (it sees what came) or the connection is done."""
        if self.task is None and not self.done:
            self.task = self.loop.create_task(self._run(), name=f"mqtt-connection:{self.peer}")

    async def _run(self) -> None:
        ended = True
        try:
            ended = await self._serve()
        except MalformedPacket as exc:
            logger.warning("mqtt client %s sent a malformed packet (%s): closing", self.describe(),
                           exc)  # fmt: skip
        except Exception:
            logger.exception("mqtt client %s: error handling a packet; closing", self.describe())
        finally:
            if ended:
                self.done = True
                await self._finish()
            else:
                self.task = None  # idle: the next bytes start a new task

    async def _serve(self) -> bool:
        """Handle every complete packet; True when the connection ends, False when idle."""
        while True:
            frame = self.reader.next()
            if frame is None:
                if self.lost:
                    return True
                self.idle = True
                self._resume()
                return False
            self.idle = False
            if not await self._handle(frame):
                return True

    async def _handle(self, frame: Frame) -> bool:
        """Handle one packet; False when the connection must end."""
        if self.session is None:
            if frame.kind != CONNECT:
                raise MalformedPacket(f"packet type {frame.kind} before CONNECT")
            return await self._connect(decode_connect(frame.body))
        kind = frame.kind
        if kind == PUBLISH:
            await self.hooks.inbound(self, decode_publish(frame))
        elif kind in (PUBACK, PUBREC, PUBREL, PUBCOMP):
            self._acknowledged(kind, decode_packet_id(frame))
        elif kind == SUBSCRIBE:
            self._subscribe(frame.body)
        elif kind == UNSUBSCRIBE:
            self._unsubscribe(frame.body)
        elif kind == PINGREQ:
            self.write(PINGRESP)
        elif kind == DISCONNECT:
            self.graceful = True
            return False
        else:
            raise MalformedPacket("a second CONNECT")  # MQTT-3.1.0-2
        return True

    def _acknowledged(self, kind: int, packet_id: int) -> None:
        session = self.session
        assert session is not None
        if kind == PUBACK:
            session.puback(packet_id)
        elif kind == PUBREC:
            session.pubrec(packet_id)
        elif kind == PUBREL:
            session.pubrel(packet_id)
        else:
            session.pubcomp(packet_id)

    # --- CONNECT -----------------------------------------------------------------------------

    async def _connect(self, connect: Connect) -> bool:
        if connect.level == 0:
            logger.warning("mqtt client %s: unsupported protocol level", self.describe())
            self.write(connack(False, CONNACK_BAD_PROTOCOL))
            return False
        self.client_id = connect.client_id or None
        if not connect.client_id and not connect.clean:
            return self._refuse(CONNACK_ID_REJECTED, "an empty client id needs clean session")
        connect.client_id = connect.client_id or f"auto-{uuid.uuid4().hex}"  # MQTT-3.1.3-6
        self._logging_in = True
        try:
            login = await self.hooks.login(self, connect)  # before any session is touched
        finally:
            self._logging_in = False
        if isinstance(login, int):
            self.write(connack(False, login))
            return False
        client_id = connect.client_id
        broker = self.hooks.broker
        if broker.held_by_other(client_id, login):
            return self._refuse(CONNACK_ID_REJECTED, "its client id is held by another login")
        self.client_id, self.login, self.will = client_id, login, connect.will
        self.hooks.deadlines.discard(self)
        session, present = broker.open_session(client_id, login, clean=connect.clean)
        self.session = session
        self.write(connack(present, CONNACK_ACCEPTED))
        session.attach(self)
        self._start_keep_alive(connect.keep_alive)
        await self.hooks.connected(self)
        return True

    def _refuse(self, code: int, reason: str) -> bool:
        logger.warning("mqtt client %s refused: %s", self.describe(), reason)
        self.write(connack(False, code))
        return False

    # --- SUBSCRIBE / UNSUBSCRIBE ---------------------------------------------------------------

    def _subscribe(self, body: bytes) -> None:
        packet_id, topics = decode_subscribe(body)
        session = self.session
        assert session is not None
        codes, retained = [], []
        for topic_filter, qos in topics:
            if not self.hooks.may_subscribe(self, topic_filter):
                codes.append(SUBSCRIBE_REFUSED)
                continue
            retained += self.hooks.broker.subscribe(session, topic_filter, qos)
            codes.append(qos)
        self.write(suback(packet_id, codes))
        for message in retained:
            session.deliver(message)

    def _unsubscribe(self, body: bytes) -> None:
        packet_id, filters = decode_unsubscribe(body)
        assert self.session is not None
        for topic_filter in filters:
            self.hooks.broker.unsubscribe(self.session, topic_filter)
        self.write(unsuback(packet_id))

    # --- the end -----------------------------------------------------------------------------

    async def _finish(self) -> None:
        self.hooks.deadlines.discard(self)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
        self.lost = True
        session, will = self.session, None
        if session is not None:
            if session.link is self:
                self.hooks.broker.close_session(session)
            will = None if self.graceful or self.stopping else self.will
        await self.hooks.closed(self, will)

    # --- timers and flow control --------------------------------------------------------------

    def _give_up_login(self) -> None:
        # A client gone while its login waits for a password check: the check is not run.
        if self._logging_in and self.task is not None:
            self.task.cancel()

    def expired(self, now: float) -> float | None:
        """Its deadline came (see `Deadlines`): the CONNECT timeout, or the keep-alive's."""
        if self.session is None:
            what = "login was not checked" if self._logging_in else "sent no CONNECT"
            logger.warning("mqtt client %s %s in %gs: closing", self.describe(), what,
                           self.settings.connect_timeout)  # fmt: skip
            self.abort()
            return None
        limit = self.keep_alive * KEEP_ALIVE_FACTOR
        if self.paused:
            return now + limit  # waiting on us is not the client's silence
        if now - self.last_read >= limit:
            logger.warning("mqtt client %s silent for %.1fs (keep-alive %gs): disconnecting",
                           self.describe(), limit, self.keep_alive)  # fmt: skip
            self.abort()
            return None
        return self.last_read + limit

    def _start_keep_alive(self, seconds: int) -> None:
        self.keep_alive = float(seconds)
        if seconds > 0:
            self.hooks.deadlines.add(self, self.last_read + seconds * KEEP_ALIVE_FACTOR)

    def _pause(self) -> None:
        if not self.paused and not self.lost:
            self.paused = True
            self.transport.pause_reading()

    def _resume(self) -> None:
        if self.paused and not self.stopping and not self.lost:
            self.paused = False
            self.last_read = self.loop.time()
            self.transport.resume_reading()
