"""The embedded MQTT broker: amqtt's broker in the gateway's own event loop.

Devices connect to it directly. Their PUBLISHes reach the application in-process (no client
connection loops back): the broker hands each message to `MqttIntake` in the publisher's
delivery loop, and the connection's reader stops reading while that waits (see
embedded_connections). Devices log in against `django_app` devices (AUTH "devices") and may
only use their own topics (ACL); connecting, disconnecting and wills update their presence.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

from amqtt.adapters import (
    ReaderAdapter,
    StreamReaderAdapter,
    StreamWriterAdapter,
    WebSocketsReader,
    WebSocketsWriter,
    WriterAdapter,
)
from amqtt.session import ApplicationMessage, Session
from websockets.asyncio.server import Server as WebSocketServer
from websockets.asyncio.server import ServerConnection, serve
from websockets.typing import Subprotocol

from gateway.mqtt import MAX_TOPIC_BYTES
from gateway.types import MqttPublishEvent
from protocol_adapters.base import AdapterContext, AdapterHealth, Listener, ProtocolAdapter
from protocol_adapters.dispatch import DispatcherClosed
from protocol_adapters.mqtt.common import (
    COMMON_OPTION_KEYS,
    InboundMessage,
    MqttIntake,
    MqttOptions,
    check_common_options,
    match_subscription,
    serve_publish_channel,
    subscriptions_for,
)
from protocol_adapters.mqtt.embedded_acl import acl_for, may_publish, may_subscribe
from protocol_adapters.mqtt.embedded_broker import KEEP_ALIVE_OFFSET, GatewayBroker
from protocol_adapters.mqtt.embedded_connections import Connection, GatedReader
from protocol_adapters.mqtt.embedded_devices import authenticate_device, device_topics, mark
from protocol_adapters.mqtt.embedded_options import EMBEDDED_DEFAULTS, check_embedded_options

__all__ = ["EmbeddedBroker"]

logger = logging.getLogger("gateway.mqtt")

KNOWN_OPTIONS: Final = COMMON_OPTION_KEYS | frozenset(EMBEDDED_DEFAULTS)
_Serve = Callable[[ReaderAdapter, WriterAdapter, Connection], Awaitable[None]]


class EmbeddedBroker(ProtocolAdapter):
    """An MQTT broker inside the gateway: devices connect here, their messages reach the app."""

    protocol = "mqtt"

    def __init__(self, context: AdapterContext) -> None:
        super().__init__(context)
        self.settings: dict[str, Any] = {**EMBEDDED_DEFAULTS, **context.options}
        self.options = MqttOptions.from_options(context.options)
        self.filters: list[str] = []
        self.intake: MqttIntake | None = None
        self.broker: GatewayBroker | None = None
        self.connections: dict[tuple[str, int], Connection] = {}
        self.peak_in_flight = 0
        """The most messages the intake held at once, as seen after each submit."""
        self._servers: list[asyncio.Server | WebSocketServer] = []
        self._device_links: dict[str, int] = {}
        self._submitting = 0
        self._stop = asyncio.Event()
        self._publisher: asyncio.Task[None] | None = None
        self._running = False

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> list[str]:
        """Every problem with OPTIONS: the shared MQTT keys and the broker's own."""
        unknown = [f"unknown option {key!r}" for key in options if key not in KNOWN_OPTIONS]
        return unknown + check_common_options(options) + check_embedded_options(options)

    # --- life cycle ------------------------------------------------------------------------

    async def start(self) -> list[Listener]:
        _quiet_library_loggers()
        self.filters = subscriptions_for(self.context.app, self.options)
        self.intake = MqttIntake(
            self.context, broker="embedded", options=self.options, publish=self.publish
        )
        names = ["mqtt", "mqtt-ws", "mqtts"]
        self.broker = GatewayBroker(self, names)
        await self.broker.start()
        listeners = await self._listen()
        if self.options.serve_publish_channel:
            self._publisher = asyncio.create_task(
                serve_publish_channel(
                    self.publish,
                    alias=self.options.layer_alias,
                    stop=self._stop,
                    max_payload=self.options.max_payload,
                ),
                name=f"mqtt-publish:{self.context.name}",
            )
        self._running = True
        logger.info("mqtt broker %r routes %s to the application", self.context.name, self.filters)
        return listeners

    async def _listen(self) -> list[Listener]:
        host = self.settings["HOST"]
        listeners = [await self._listen_tcp("mqtt", host, self.settings["PORT"], None)]
        if self.settings["WS_PORT"] is not None:
            server = await serve(
                self._serve_websocket,
                host,
                self.settings["WS_PORT"],
                subprotocols=[Subprotocol("mqtt")],
            )
            self._servers.append(server)
            listeners.append(Listener("mqtt-ws", _address("ws", server.sockets) + "/"))
        tls = self.settings["TLS"]
        if tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(tls["CERT_FILE"], tls["KEY_FILE"])
            listeners.append(await self._listen_tcp("mqtts", host, tls.get("PORT", 8883), context))
        return listeners

    async def _listen_tcp(
        self, name: str, host: str, port: int, context: ssl.SSLContext | None
    ) -> Listener:
        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._serve(name, StreamReaderAdapter(reader), StreamWriterAdapter(writer))

        server = await asyncio.start_server(accept, host, port, ssl=context)
        self._servers.append(server)
        scheme = "mqtts" if context is not None else "mqtt"
        return Listener(name, _address(scheme, server.sockets))

    async def stop(self, timeout: float) -> None:
        """Refuse new clients, stop reading, drain the intake, then shut the broker down."""
        self._running = False
        for server in self._servers:
            server.close()
        for connection in self.connections.values():
            connection.stop_reading()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        await self._drain_read_ahead(deadline)
        if self.intake is not None:
            cut = await self.intake.aclose(max(0.0, deadline - loop.time()))
            if cut:
                logger.warning(
                    "mqtt broker %r stopped with %d messages cut", self.context.name, cut
                )
        self._stop.set()
        if self._publisher is not None:
            await self._publisher
        await self._shutdown_broker(timeout)

    async def _drain_read_ahead(self, deadline: float) -> None:
        # Messages already read (and PUBACKed) still reach the intake before it closes.
        loop = asyncio.get_running_loop()
        while self._submitting or any(c.backlog for c in self.connections.values()):
            if loop.time() >= deadline:
                return
            await asyncio.sleep(0.02)

    async def _shutdown_broker(self, timeout: float) -> None:
        broker = self.broker
        if broker is not None and broker.transitions.state == "started":
            try:
                async with asyncio.timeout(max(timeout, 1.0)):
                    await broker.shutdown()
            except TimeoutError:
                logger.warning("the mqtt broker did not shut down in time; closing its clients")
                for connection in list(self.connections.values()):
                    connection.abort()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)

    def health(self) -> AdapterHealth:
        broker = self.broker
        if broker is None or broker.transitions.state != "started":
            return AdapterHealth("down", "the broker is not running")
        in_flight = self.intake.in_flight if self.intake is not None else 0
        return AdapterHealth("ok", f"{len(self.connections)} client(s), {in_flight} in flight")

    # --- connections -----------------------------------------------------------------------

    async def _serve(self, listener: str, reader: ReaderAdapter, writer: WriterAdapter) -> None:
        assert self.broker is not None
        peer = writer.get_peer_info()
        if peer is None or not self._running:
            await writer.close()
            return
        connection = Connection(
            peer, listener, abort=_aborter(writer), max_packet=self._max_packet()
        )
        self.connections[peer] = connection
        try:
            await self.broker.external_connected(
                GatedReader(reader, connection), writer, listener_name=listener
            )
        finally:
            connection.close()
            self.connections.pop(peer, None)
            with contextlib.suppress(Exception):
                await writer.close()

    async def _serve_websocket(self, websocket: ServerConnection) -> None:
        await self._serve("mqtt-ws", WebSocketsReader(websocket), WebSocketsWriter(websocket))

    def _max_packet(self) -> int:
        # A PUBLISH's topic (2 + up to 65,535 bytes) and packet id come on top of the payload.
        return self.options.max_payload + MAX_TOPIC_BYTES + 4

    # --- broker hooks (see embedded_broker.BrokerHooks) -------------------------------------

    async def authenticate(self, session: Session, listener: str) -> bool:
        """CONNECT: check the credentials and the will topic, start presence and keep-alive."""
        connection = self.connections.get((session.remote_address or "", session.remote_port or 0))
        if connection is None:
            return False
        connection.client_id = session.client_id
        if not await self._identify(connection, session):
            self.context.metrics.inc(self.protocol, "rejected")
            return False
        keep_alive = session.keep_alive - KEEP_ALIVE_OFFSET if session.keep_alive > 0 else 0
        connection.start_keep_alive(float(keep_alive))
        if connection.device_id is not None:
            await self._link_device(connection.device_id)
        return True

    async def _identify(self, connection: Connection, session: Session) -> bool:
        client = f"{session.client_id!r} ({connection.peer[0]}:{connection.peer[1]})"
        username = session.username or ""
        patterns = self.settings["ACL"]
        if self.settings["AUTH"] == "devices":
            device = await authenticate_device(username, _text(session.password))
            if device is None:
                logger.warning("mqtt client %s refused: wrong device id or password", client)
                return False
            connection.device_id = device
            patterns = await device_topics(device) or patterns
        connection.identity = username or session.client_id or ""
        if patterns is not None:
            topics = acl_for(
                [patterns] if isinstance(patterns, str) else patterns, connection.identity
            )
            if topics is None:
                logger.warning("mqtt client %s refused: its id cannot name topics", client)
                return False
            connection.topics = topics
        will = session.will_topic if session.will_flag else None
        if will is not None and connection.topics and not may_publish(connection.topics, will):
            logger.warning("mqtt client %s refused: will topic %r is not its own", client, will)
            return False
        return True

    def may_subscribe(self, connection: Connection, topic_filter: str) -> bool:
        """SUBSCRIBE: only filters within the client's own topics."""
        if not connection.topics or may_subscribe(connection.topics, topic_filter):
            return True
        self.context.metrics.inc(self.protocol, "rejected")
        logger.warning(
            "mqtt client %r may not subscribe to %r: refused", connection.client_id, topic_filter
        )
        return False

    async def inbound(self, connection: Connection, message: ApplicationMessage) -> bool:
        """PUBLISH: refuse other devices' topics, hand ours to the intake; False drops it."""
        if message.qos in (0, 1):
            connection.took_one()
        topic = message.topic
        if not topic or "+" in topic or "#" in topic or topic.startswith("$"):
            return True  # amqtt disconnects the client for these
        if connection.topics and not may_publish(connection.topics, topic):
            self.context.metrics.inc(self.protocol, "rejected")
            logger.warning(
                "mqtt client %r may not publish to %r: dropped", connection.client_id, topic
            )
            return False
        packet = message.publish_packet
        dup = bool(packet is not None and packet.dup_flag)
        await self._submit(
            connection, topic, bytes(message.data), message.qos, dup, message.packet_id
        )
        return True

    async def will(self, connection: Connection, session: Session) -> None:
        """An abnormal disconnect: the will goes to the application as well as to subscribers."""
        if session.will_topic:
            payload = bytes(session.will_message or b"")
            await self._submit(
                connection, session.will_topic, payload, session.will_qos, False, None, will=True
            )

    async def disconnected(self, connection: Connection) -> None:
        """The client's delivery loop ended: update presence once its last connection is gone."""
        device_id, connection.device_id = connection.device_id, None
        if device_id is not None:
            await self._unlink_device(device_id)

    # --- intake and publishing -------------------------------------------------------------

    async def _submit(
        self,
        connection: Connection,
        topic: str,
        payload: bytes,
        qos: int | None,
        dup: bool,
        message_id: int | None,
        *,
        will: bool = False,
    ) -> None:
        subscription = match_subscription(self.filters, topic)
        if subscription is None or self.intake is None:
            return
        if len(payload) > self.options.max_payload:
            self.context.metrics.inc(self.protocol, "rejected")
            logger.warning("mqtt message on %r is %d bytes, over MAX_PAYLOAD", topic, len(payload))
            return
        qos_level = qos if qos in (1, 2) else 0
        message = InboundMessage(
            topic=topic,
            payload=payload,
            qos=qos_level,  # type: ignore[arg-type]
            dup=dup,
            message_id=message_id if qos_level else None,
            client_id=connection.client_id,
            device_id=connection.device_id,
            subscription=subscription,
        )
        self._submitting += 1
        try:
            await self.intake.submit(message)
        except DispatcherClosed:
            # Wills of the clients the shutdown disconnects end here too: not worth a warning.
            level = logging.DEBUG if will else logging.WARNING
            logger.log(level, "mqtt message on %r dropped: the gateway is stopping", topic)
            return
        finally:
            self._submitting -= 1
        self.peak_in_flight = max(self.peak_in_flight, self.intake.in_flight)

    async def publish(self, event: MqttPublishEvent) -> None:
        """Deliver a validated ``mqtt.publish`` to the broker's matching sessions."""
        broker = self.broker
        if broker is None or broker.transitions.state != "started":
            raise RuntimeError("the embedded MQTT broker is not running")
        qos = event.get("qos", 0)
        if event.get("retain", False):
            await broker.retain_message(None, event["topic"], event["payload"], qos)
        await broker.internal_message_broadcast(event["topic"], event["payload"], qos)

    async def _link_device(self, device_id: str) -> None:
        self._device_links[device_id] = self._device_links.get(device_id, 0) + 1
        await mark(device_id, online=True)

    async def _unlink_device(self, device_id: str) -> None:
        left = self._device_links.get(device_id, 1) - 1
        if left > 0:
            self._device_links[device_id] = left
            return  # a newer connection of the same device took over
        self._device_links.pop(device_id, None)
        await mark(device_id, online=False)


def _quiet_library_loggers() -> None:
    # amqtt logs every connection and its state machine (transitions) every state change at
    # INFO; the gateway's own lines say what matters. A level set by the user is kept.
    for name in ("amqtt", "transitions"):
        library = logging.getLogger(name)
        if library.level == logging.NOTSET:
            library.setLevel(logging.WARNING)


def _address(scheme: str, sockets: Any) -> str:
    host, port = sockets[0].getsockname()[:2]
    return f"{scheme}://{host}:{port}"


def _aborter(writer: WriterAdapter) -> Callable[[], None]:
    inner: Any = getattr(writer, "_writer", None) or getattr(writer, "_protocol", None)
    transport = getattr(inner, "transport", None)
    return transport.abort if transport is not None else (lambda: None)


def _text(value: str | bytes | None) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value or ""
