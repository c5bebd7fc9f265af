"""The embedded MQTT broker: an MQTT 3.1.1 broker in the gateway's own event loop.

Devices connect to it directly. Their PUBLISHes reach the application in-process, and are
acknowledged (PUBACK, or PUBREC for QoS 2) only once the application returned or the message
was dead-lettered, as on an external broker. Devices log in against `django_app` devices
(AUTH "devices"), before any session is looked up; each connection gets its device's topic
ACL whatever its client id and session flags; connecting, disconnecting and wills update
their presence. The wire, the sessions and the routing are in the sibling ``embedded_*`` and
``wire`` modules.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections import Counter
from collections.abc import Mapping
from functools import partial
from typing import Any

from websockets.asyncio.server import Server as WebSocketServer
from websockets.asyncio.server import ServerConnection, serve
from websockets.typing import Subprotocol

from gateway.adapters import (
    AdapterContext,
    AdapterHealth,
    DeployRisk,
    Listener,
    ProtocolAdapter,
)
from gateway.devices import DeviceStore, load_device_store
from gateway.logins import LoginGate
from gateway.mqtt import MAX_TOPIC_BYTES
from gateway.pipeline import DispatcherClosed, Outcome
from gateway.types import MqttPublishEvent
from protocol_adapters.mqtt.common import (
    InboundMessage,
    MqttIntake,
    MqttOptions,
    match_subscription,
    serve_publish_channel,
    subscriptions_for,
)
from protocol_adapters.mqtt.device_link import DeviceLink
from protocol_adapters.mqtt.embedded_acl import may_publish, may_subscribe
from protocol_adapters.mqtt.embedded_auth import log_in
from protocol_adapters.mqtt.embedded_broker import Broker, Login
from protocol_adapters.mqtt.embedded_connections import Connection, ConnectionSettings
from protocol_adapters.mqtt.embedded_deadlines import Deadlines
from protocol_adapters.mqtt.embedded_options import (
    EMBEDDED_OPTIONS,
    broker_limits,
    embedded_deploy_risks,
)
from protocol_adapters.mqtt.embedded_sessions import Session
from protocol_adapters.mqtt.embedded_websocket import serve_websocket
from protocol_adapters.mqtt.wire import (
    CONNACK_SERVER_UNAVAILABLE,
    PUBREC,
    Connect,
    Publish,
    Will,
    ack,
)

__all__ = ["EmbeddedBroker"]

logger = logging.getLogger("gateway.mqtt")


class EmbeddedBroker(ProtocolAdapter):
    """An MQTT broker inside the gateway: devices connect here, their messages reach the app."""

    protocol = "mqtt"

    def __init__(self, context: AdapterContext) -> None:
        super().__init__(context)
        self.settings: dict[str, Any] = EMBEDDED_OPTIONS.parse(context.options)
        self.options = MqttOptions.from_options(context.options)
        self.filters: list[str] = []
        self.intake: MqttIntake | None = None
        self.broker = Broker(broker_limits(self.settings), on_dropped=self._dropped)
        self.connections: dict[tuple[str, int], Connection] = {}
        self.deadlines = Deadlines()
        """Every connection's CONNECT timeout or keep-alive, on one timer."""
        self._connection_settings = ConnectionSettings(
            max_packet=self.options.max_payload + MAX_TOPIC_BYTES + 4,
            connect_timeout=float(self.settings["CONNECT_TIMEOUT"]),
        )
        self.peak_in_flight = 0
        """The most messages the intake held at once, as seen after each submit."""
        self._per_address: Counter[str] = Counter()
        self._servers: list[asyncio.Server | WebSocketServer] = []
        self._device_links: Counter[str] = Counter()
        self._stop = asyncio.Event()
        self._services: list[asyncio.Task[None]] = []
        self._link: DeviceLink | None = None
        """Answers to commands (``COMMANDS``): presence is the broker's own."""
        self._running = False
        self.devices: DeviceStore | None = None
        """Where logins are checked and presence kept (AUTH "devices"), else None."""
        # Held busy refusals are open connections already: MAX_CONNECTIONS bounds them, not
        # the gate's MAX_WAITING (a flood from more clients than that would keep its pace).
        self.logins = LoginGate(self.settings["LOGINS"], most_held=self.settings["MAX_CONNECTIONS"])
        """Admits password checks: bounded, fair between addresses, failures rate-limited."""

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> list[str]:
        """Every problem with OPTIONS: the shared MQTT keys and the broker's own."""
        return EMBEDDED_OPTIONS.check(options)

    @classmethod
    def deploy_risks(cls, options: Mapping[str, Any]) -> list[DeployRisk]:
        """Anonymous logins on a public address (gateway.W105)."""
        return embedded_deploy_risks(options)

    # --- life cycle ------------------------------------------------------------------------

    async def start(self) -> list[Listener]:
        if self.settings["AUTH"] == "devices":
            self.devices = load_device_store(self.settings["DEVICE_STORE"])
        self.filters = subscriptions_for(self.context.app, self.options)
        self.intake = MqttIntake(
            self.context, broker="embedded", options=self.options, publish=self.publish
        )
        self._link = DeviceLink.build(self.filters, self.settings["COMMANDS"], None,
                                      publish=self.publish, mqtt5=False,
                                      alias=self.options.layer_alias,
                                      max_payload=self.options.max_payload)  # fmt: skip
        listeners = await self._listen()
        services = self._link.services(self._stop) if self._link is not None else []
        if self.options.serve_publish_channel:
            services.append(serve_publish_channel(self.publish, alias=self.options.layer_alias,
                            stop=self._stop, max_payload=self.options.max_payload))  # fmt: skip
        name = f"mqtt-services:{self.context.name}"
        self._services = [asyncio.create_task(service, name=name) for service in services]
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
        loop = asyncio.get_running_loop()
        server = await loop.create_server(partial(self._connection, name), host, port, ssl=context)
        self._servers.append(server)
        scheme = "mqtts" if context is not None else "mqtt"
        return Listener(name, _address(scheme, server.sockets))

    def _connection(self, listener: str) -> Connection:
        return Connection(self, listener, self._connection_settings)

    async def _serve_websocket(self, websocket: ServerConnection) -> None:
        await serve_websocket(websocket, self._connection("mqtt-ws"))

    async def stop(self, timeout: float) -> None:
        """Refuse new clients, stop reading, drain the intake, then close every connection."""
        self._running = False
        for server in self._servers:
            server.close()
        for connection in list(self.connections.values()):
            connection.stop_reading()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        await self._drain_read(deadline)
        cut = await self.intake.aclose(max(0.0, deadline - loop.time())) if self.intake else 0
        if cut:
            logger.warning("mqtt broker %r stopped with %d messages cut", self.context.name, cut)
        self._stop.set()
        await asyncio.gather(*self._services, return_exceptions=True)
        if self._link is not None:
            await self._link.aclose()
        await self._close_connections()

    async def _drain_read(self, deadline: float) -> None:
        # Packets already read reach the intake before it closes (then they are acknowledged).
        loop = asyncio.get_running_loop()
        while not all(c.idle or c.lost for c in self.connections.values()):
            if loop.time() >= deadline:
                return
            await asyncio.sleep(0.02)

    async def _close_connections(self) -> None:
        connections = list(self.connections.values())
        for connection in connections:
            connection.abort()
        tasks = [c.task for c in connections if c.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=5.0)
        self.deadlines.close()
        self.broker.clear()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)

    def health(self) -> AdapterHealth:
        if not self._running:
            return AdapterHealth("down", "the broker is not running")
        in_flight = self.intake.in_flight if self.intake is not None else 0
        return AdapterHealth("ok", f"{len(self.connections)} client(s), {in_flight} in flight")

    # --- connection hooks (see embedded_connections.ConnectionHooks) --------------------------

    def admit(self, connection: Connection) -> bool:
        """A new socket: refused while stopping or past the connection caps."""
        address = connection.peer[0]
        if not self._running:
            return False
        if len(self.connections) >= self.settings["MAX_CONNECTIONS"]:
            return self._over_cap(connection, "MAX_CONNECTIONS")
        if self._per_address[address] >= self.settings["MAX_CONNECTIONS_PER_ADDRESS"]:
            return self._over_cap(connection, "MAX_CONNECTIONS_PER_ADDRESS")
        self.connections[connection.peer] = connection
        self._per_address[address] += 1
        return True

    def _over_cap(self, connection: Connection, setting: str) -> bool:
        self.context.metrics.inc(self.protocol, "rejected")
        logger.warning("mqtt connection from %s:%s refused: %s reached", *connection.peer, setting)
        return False

    async def login(self, connection: Connection, connect: Connect) -> Login | int:
        """CONNECT: who the client is and which topics it may use, or a CONNACK refusal code."""
        try:
            login = await log_in(connect, connection.describe(), self.devices, self.settings["ACL"],
                                 gate=self.logins, address=connection.peer[0])  # fmt: skip
        except Exception:
            logger.exception("mqtt login of %s failed with an error", connection.describe())
            login = CONNACK_SERVER_UNAVAILABLE
        else:
            if login == CONNACK_SERVER_UNAVAILABLE:  # from the LoginGate: too many checks wait
                self.context.metrics.inc(self.protocol, "overloaded")
                await self.logins.busy_hold.hold()  # LOGINS["BUSY_DELAY"]
        if isinstance(login, int):
            self.context.metrics.inc(self.protocol, "rejected")
        return login

    def may_subscribe(self, connection: Connection, topic_filter: str) -> bool:
        """SUBSCRIBE: only filters within the client's own topics."""
        if not connection.topics or may_subscribe(connection.topics, topic_filter):
            return True
        self.context.metrics.inc(self.protocol, "rejected")
        logger.warning("mqtt client %s may not subscribe to %r: refused", connection.describe(),
                       topic_filter)  # fmt: skip
        return False

    async def inbound(self, connection: Connection, publish: Publish) -> None:
        """PUBLISH: to the subscribers and the application; acknowledged once it is handled."""
        session = connection.session
        assert session is not None
        packet_id = publish.packet_id
        if packet_id is not None:
            if packet_id in session.handling:
                return  # a resend of a message the application has: its ack follows
            if publish.qos == 2 and packet_id in session.received:
                session.send(ack(PUBREC, packet_id))  # handled already: exactly once
                return
        if connection.topics and not may_publish(connection.topics, publish.topic):
            self.context.metrics.inc(self.protocol, "rejected")
            logger.warning("mqtt client %s may not publish to %r: dropped", connection.describe(),
                           publish.topic)  # fmt: skip
            _acknowledge_now(session, publish)
            return
        self.broker.publish(publish.topic, publish.payload, publish.qos, retain=publish.retain)
        link = self._link
        own = link.take(publish.topic, publish.payload, publish.retain, {}) if link else None
        if link is not None and own is not None:  # an answer to a command: not the app's
            link.spawn(own, partial(_acknowledge_now, session, publish))
            return
        await self._submit(connection, publish, session)

    async def closed(self, connection: Connection, will: Will | None) -> None:
        """A connection ended: its will (if abnormal), then presence."""
        if self.connections.get(connection.peer) is connection:
            del self.connections[connection.peer]
            self._per_address[connection.peer[0]] -= 1
            if self._per_address[connection.peer[0]] <= 0:
                del self._per_address[connection.peer[0]]
        if will is not None:
            self.broker.publish(will.topic, will.payload, will.qos, retain=will.retain)
            publish = Publish(will.topic, will.payload, will.qos, will.retain, False, None)
            await self._submit(connection, publish, None, will=True)
        if connection.session is not None and connection.device_id is not None:
            await self._unlink_device(connection.device_id)

    async def connected(self, connection: Connection) -> None:
        """A client's CONNECT was accepted: its device is online."""
        if connection.device_id is not None:
            self._device_links[connection.device_id] += 1
            await self._mark(connection.device_id, online=True)

    # --- intake and publishing -------------------------------------------------------------

    async def _submit(
        self,
        connection: Connection,
        publish: Publish,
        session: Session | None,
        *,
        will: bool = False,
    ) -> None:
        subscription = match_subscription(self.filters, publish.topic)
        intake = self.intake
        if subscription is None or intake is None:
            _acknowledge_now(session, publish)
            return
        if len(publish.payload) > self.options.max_payload:
            self.context.metrics.inc(self.protocol, "rejected")
            logger.warning("mqtt message on %r is %d bytes, over MAX_PAYLOAD", publish.topic,
                           len(publish.payload))  # fmt: skip
            _acknowledge_now(session, publish)
            return
        message = InboundMessage(
            topic=publish.topic,
            payload=publish.payload,
            qos=publish.qos,  # type: ignore[arg-type]
            dup=publish.dup,
            message_id=publish.packet_id,
            client_id=connection.client_id,
            device_id=connection.device_id,
            subscription=subscription,
        )
        on_done = None
        if session is not None and publish.packet_id is not None:
            session.handling.add(publish.packet_id)
            on_done = partial(_acknowledge, session, publish.qos, publish.packet_id)
        try:
            if not intake.try_submit(message, on_done):
                await intake.submit(message, on_done)
        except DispatcherClosed:
            if session is not None and publish.packet_id is not None:
                session.handling.discard(publish.packet_id)  # never acknowledged: resent later
            level = logging.DEBUG if will else logging.WARNING
            logger.log(level, "mqtt message on %r dropped: the gateway is stopping", publish.topic)
            return
        self.peak_in_flight = max(self.peak_in_flight, intake.in_flight)

    async def publish(self, event: MqttPublishEvent) -> None:
        """Deliver a validated ``mqtt.publish`` to the broker's matching sessions."""
        if not self._running:
            raise RuntimeError("the embedded MQTT broker is not running")
        qos = event.get("qos", 0)
        retain = event.get("retain", False)
        self.broker.publish(event["topic"], event["payload"], qos, retain=retain)

    def _dropped(self, session: Session, count: int) -> None:
        self.context.metrics.inc(self.protocol, "dropped", count)
        logger.warning("mqtt client %r: queue full (%d messages, %d bytes), %d oldest dropped",
                       session.client_id, len(session.queue), session.queued_bytes,
                       count)  # fmt: skip

    async def _unlink_device(self, device_id: str) -> None:
        self._device_links[device_id] -= 1
        if self._device_links[device_id] > 0:
            return  # a newer connection of the same device took over
        del self._device_links[device_id]
        await self._mark(device_id, online=False)

    async def _mark(self, device_id: str, *, online: bool) -> None:
        # Presence is worth a log line, not a refused or dropped client.
        if self.devices is None:
            return
        try:
            await (self.devices.mark_online if online else self.devices.mark_offline)(device_id)
        except Exception:
            state = "online" if online else "offline"
            logger.exception("could not record device %r as %s", device_id, state)


def _acknowledge(session: Session, qos: int, packet_id: int, outcome: Outcome) -> None:
    session.acknowledge(qos, packet_id)


def _acknowledge_now(session: Session | None, publish: Publish) -> None:
    if session is not None and publish.packet_id is not None:
        session.acknowledge(publish.qos, publish.packet_id)


def _address(scheme: str, sockets: Any) -> str:
    return "{}://{}:{}".format(scheme, *sockets[0].getsockname()[:2])
