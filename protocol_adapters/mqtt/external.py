"""The gateway as a client of an external MQTT broker (Mosquitto, EMQX, ...), on gmqtt.

What gmqtt 0.8 does, and what this adapter does about it:

* gmqtt hands each inbound PUBLISH to ``on_message``; a coroutine ``on_message`` runs as one
  task per message (``asyncio.ensure_future``, never awaited in sequence), and with
  ``optimistic_acknowledgement=False`` the PUBACK / PUBREC goes out from that task's done
  callback. That works, but costs a task per message and never tells the packet id. So the
  adapter takes over gmqtt's QoS 1/2 handler methods (`_compat_gmqtt`, with the other
  overrides and a version check): every PUBLISH goes synchronously, in arrival order, from
  gmqtt's read loop into the intake (ordered per topic, concurrent across topics), and the
  adapter sends PUBACK / PUBREC itself when the intake reports the outcome (handled or
  dead-lettered). The same for MQTT 3.1.1.
* An acknowledgement for a message of a connection that is gone is dropped
  (`Client._send_command_with_mid`): the broker redelivers such a message, and a stale
  packet id must never acknowledge another message on a new connection.
* gmqtt's own reconnect retries at a fixed delay and never resubscribes. The adapter turns it
  off (`Client.reconnect`) and reconnects itself with capped exponential backoff and jitter,
  a new client per connection, subscribing again every time.
* Flow control: MQTT 5's Receive Maximum (MAX_IN_FLIGHT) bounds unacknowledged QoS 1/2
  messages; when the intake is full anyway (QoS 0, MQTT 3.1.1) the socket is no longer read
  and the few messages already read wait in order (`external_inbound`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, Literal

from gmqtt import MQTTConnectError, Subscription
from gmqtt.storage import PersistentStorage

from gateway.adapters import AdapterHealth, Listener, ProtocolAdapter
from gateway.exceptions import ImproperlyConfiguredGateway
from gateway.types import MqttPublishEvent
from protocol_adapters.mqtt._compat_gmqtt import OUTBOUND_PROPERTIES, check_version
from protocol_adapters.mqtt._compat_gmqtt import Client as _Client
from protocol_adapters.mqtt.common import MqttIntake, serve_publish_channel, subscriptions_for
from protocol_adapters.mqtt.device_link import APP_SUBSCRIPTION, OWN_SUBSCRIPTION, DeviceLink
from protocol_adapters.mqtt.external_failover import SessionFailover
from protocol_adapters.mqtt.external_inbound import InboundFlow
from protocol_adapters.mqtt.external_options import (
    Backoff,
    ExternalOptions,
    FailoverOptions,
    check_external_options,
)

__all__ = ["ExternalBroker"]

logger = logging.getLogger("gateway.mqtt")


class ExternalBroker(ProtocolAdapter):
    """A client of an MQTT 5 or 3.1.1 broker: subscribes to the routes, acks after the app."""

    protocol = "mqtt"

    @classmethod
    def check_options(cls, options: Any) -> list[str]:
        try:
            check_version()
        except ImproperlyConfiguredGateway as exc:
            return [str(exc)]
        return check_external_options(options)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.options = ExternalOptions.from_options(self.context.options)
        self._filters: list[str] = []
        self._link: DeviceLink | None = None
        self._intake: MqttIntake | None = None
        self._client: _Client | None = None
        self._connected = asyncio.Event()
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._inbound: InboundFlow | None = None
        self._reconnects = 0
        self._refused: list[str] = []
        self._status: Literal["ok", "degraded", "down"] = "degraded"
        self._detail = "not connected yet"
        self._since = time.monotonic()
        self._outbox = PersistentStorage()
        self._failover: SessionFailover | None = None

    # --- life cycle ---------------------------------------------------------------------------

    async def start(self) -> list[Listener]:
        check_version()
        common = self.options.common
        self._filters = self.options.filters(subscriptions_for(self.context.app, common))
        self._intake = MqttIntake(
            self.context, broker="external", options=common, publish=self._publish
        )
        self._link = DeviceLink.build(
            self._filters,
            self.options.commands,
            self.options.presence,
            publish=self._publish,
            mqtt5=self.options.protocol == 5,
            alias=common.layer_alias,
            max_payload=common.max_payload,
        )
        self._inbound = InboundFlow(self._intake, self._filters, self._stopping, self._link)
        first: _Client | None = None
        try:
            first = await self._open()
        except MQTTConnectError as exc:
            if _permanent(exc):
                raise ConnectionRefusedError(
                    f"{self.options.address} refused the connection: {exc}"
                ) from exc
            self._disconnected(f"refused: {exc}")
        except (OSError, TimeoutError) as exc:
            self._disconnected(_reason(exc))
        self._tasks.append(asyncio.create_task(self._run(first), name=f"mqtt:{self.context.name}"))
        if common.serve_publish_channel:
            serve = serve_publish_channel(
                self._publish,
                alias=common.layer_alias,
                stop=self._stopping,
                max_payload=common.max_payload,
            )
            self._tasks.append(asyncio.create_task(serve, name=f"mqtt-publish:{self.context.name}"))
        for service in self._link.services(self._stopping) if self._link else []:
            self._tasks.append(
                asyncio.create_task(service, name=f"mqtt-devices:{self.context.name}")
            )
        if self.options.failover is not None:
            self._start_failover(self.options.failover)
        return [Listener("mqtt", f"{self.options.address} (client {self.options.client_id})")]

    def _start_failover(self, options: FailoverOptions) -> None:
        own = self._link.filters if self._link is not None else []
        self._failover = SessionFailover(
            self.context.name,
            self.options.client_id,
            options,
            self._connect_as,
            lambda: [*self._filters, *own],
            alias=self.options.common.layer_alias,
        )
        run = self._failover.run(self._stopping)
        self._tasks.append(asyncio.create_task(run, name=f"mqtt-failover:{self.context.name}"))

    async def stop(self, timeout: float) -> None:
        # New messages are no longer handed to the app nor acknowledged: the broker keeps them.
        self._stopping.set()
        if self._intake is not None:
            leftover = await self._intake.aclose(timeout)
            if leftover:
                logger.warning(
                    "%s: %d messages not handled before the stop", self.context.name, leftover
                )
        drainer = self._inbound.drainer if self._inbound is not None else None
        tasks = [*self._tasks, *([drainer] if drainer else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._link is not None:
            await self._link.aclose()
        if self._client is not None:
            await self._client.close()
        self._status, self._detail = "down", "stopped"

    @property
    def buffered(self) -> int:
        """Messages read from the socket that wait for room in the intake (bounded)."""
        return len(self._inbound.parked) if self._inbound is not None else 0

    def health(self) -> AdapterHealth:
        subs = f"{len(self._filters)} subscriptions, {self._reconnects} reconnects"
        if self._failover is not None:
            subs += f", {self._failover.adopted} sessions of gone processes adopted"
        if self._status == "ok":
            refused = f"; refused: {', '.join(self._refused)}" if self._refused else ""
            status: Literal["ok", "degraded"] = "degraded" if self._refused else "ok"
            return AdapterHealth(status, f"connected to {self.options.address}; {subs}{refused}")
        since = time.monotonic() - self._since
        return AdapterHealth(self._status, f"{self._detail} ({since:.0f}s); {subs}")

    # --- connections --------------------------------------------------------------------------

    async def _run(self, client: _Client | None) -> None:
        """Serve a connection until it is lost, reconnect with backoff, forever until stopped."""
        backoff = Backoff(self.options.reconnect_initial, self.options.reconnect_max)
        while not self._stopping.is_set():
            if client is not None:
                backoff.reset()
                await self._serve(client)
                client = None
                continue
            delay = backoff.next()
            logger.warning(
                "%s: reconnecting to %s in %.2fs (attempt %d): %s",
                self.context.name,
                self.options.address,
                delay,
                backoff.attempt,
                self._detail,
            )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stopping.wait()
                return
            try:
                client = await self._open()
                self._reconnects += 1
            except Exception as exc:  # any failure to connect is retried, never fatal
                self._disconnected(_reason(exc))
                if isinstance(exc, MQTTConnectError) and _permanent(exc):
                    self._status = "down"

    async def _serve(self, client: _Client) -> None:
        await client.lost.wait()
        self._connected.clear()
        if self._client is client:
            self._client = None
        self._disconnected(client.lost_reason)
        await client.close()

    async def _open(self) -> _Client:
        """Connect, subscribe to every filter, and make it the current connection."""
        options = self.options
        client = self._new_client()
        try:
            async with asyncio.timeout(options.connect_timeout):
                await self._connect(client)
                await self._subscribe(client)
        except BaseException:
            await client.close()
            raise
        self._client = client
        self._status, self._detail, self._since = "ok", "connected", time.monotonic()
        self._connected.set()
        logger.info(
            "%s: connected to %s as %r, subscribed to %s",
            self.context.name,
            options.address,
            options.client_id,
            [*self._filters, *(self._link.filters if self._link is not None else [])],
        )
        return client

    async def _connect(self, client: _Client) -> None:
        options = self.options
        await client.connect(
            options.host,
            options.port,
            ssl=options.tls or False,
            keepalive=options.keepalive,
            version=options.protocol,
        )

    async def _connect_as(self, client_id: str, clean: bool) -> _Client:
        """Connect as a gone process (failover): resume its session, or end it (`clean`)."""
        client = self._new_client(client_id, clean)
        try:
            async with asyncio.timeout(self.options.connect_timeout):
                await self._connect(client)
        except BaseException:
            await client.close()
            raise
        return client

    def _new_client(self, adopt: str | None = None, end: bool = False) -> _Client:
        """A client of our own session, or of session `adopt` (resumed, or ended: `end`)."""
        options = self.options
        properties: dict[str, Any] = {}
        if options.protocol == 5:
            properties["session_expiry_interval"] = 0 if end else options.session_expiry
            properties["receive_maximum"] = min(options.common.max_in_flight, 65535)
        client = _Client(
            adopt or options.client_id,
            clean_session=end or (options.clean_start and adopt is None),
            optimistic_acknowledgement=False,
            persistent_storage=self._outbox if adopt is None else PersistentStorage(),
            **properties,
        )
        # Our QoS 1/2 publishes not yet acknowledged are sent again on a resumed session, with
        # their packet ids: the new client must not hand those ids out again meanwhile.
        if adopt is None:
            client.reserve_ids(mid for mid, _ in self._outbox.get_all())
        if options.username is not None:
            client.set_auth_credentials(options.username, options.password)
        inbound = self._inbound
        assert inbound is not None  # start() made it before the first connection
        client.deliver_to(inbound.on_publish)
        client.on_message = inbound.on_qos0
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        return client

    async def _subscribe(self, client: _Client) -> None:
        self._refused = []
        own = self._link.filters if self._link is not None else []
        if not self._filters and not own:
            return
        # retain_handling 1: retained messages for a new subscription, not on each resubscribe.
        # The adapter's own (status topics) always get them: they are the devices' state.
        mqtt5 = self.options.protocol == 5
        retain_handling = 1 if mqtt5 else 0
        qos = self.options.common.qos
        subs = [
            Subscription(f, qos=qos, retain_handling_options=retain_handling) for f in self._filters
        ]
        mine = [Subscription(f, qos=max(qos, 1), retain_handling_options=0) for f in own]
        sent: list[tuple[list[Subscription], int | None]]
        if mqtt5:  # a copy per subscription: each SUBSCRIBE's identifier says whose it is
            sent = [(subs, APP_SUBSCRIPTION), (mine, OWN_SUBSCRIPTION)]
        else:
            sent = [(subs + mine, None)]
        codes: list[int] = []
        for batch, identifier in sent:
            if batch:
                codes += await _subscribed(client, batch, identifier)
        for topic_filter, code in zip([*self._filters, *own], codes, strict=False):
            if code >= 0x80:
                self._refused.append(f"{topic_filter} (0x{code:02x})")
                logger.error(
                    "%s: the broker refused the subscription %r (reason 0x%02x)",
                    self.context.name,
                    topic_filter,
                    code,
                )

    def _disconnected(self, reason: str) -> None:
        if self._status == "ok" or self._detail == "not connected yet":
            self._since = time.monotonic()
        self._status, self._detail = (
            "degraded",
            f"disconnected from {self.options.address}: {reason}",
        )

    # --- gmqtt callbacks ----------------------------------------------------------------------

    def _on_subscribe(
        self, client: _Client, mid: int, codes: tuple[int, ...], properties: Any
    ) -> None:
        waiter = client.subacks.pop(mid, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(tuple(codes))

    def _on_disconnect(self, client: _Client, packet: Any, exc: Any = None) -> None:
        if packet:  # a DISCONNECT from the broker; b"" when the socket closed
            code = bytes(packet)[:1].hex() or "00"
            client.lost_reason = f"the broker sent DISCONNECT (reason 0x{code})"

    # --- publishing ---------------------------------------------------------------------------

    async def _publish(self, event: MqttPublishEvent) -> None:
        """Queue one validated ``mqtt.publish`` on the connection; wait for one if down."""
        client = self._client
        if client is None or client.lost.is_set():
            try:
                async with asyncio.timeout(self.options.connect_timeout):
                    await self._connected.wait()
            except TimeoutError:
                raise ConnectionError(
                    f"not connected to {self.options.address}: {self._detail}"
                ) from None
            client = self._client
            assert client is not None
        properties: dict[str, Any] = {}
        given: dict[str, Any] = dict(event.get("properties", {}))
        for key, value in given.items():
            if key == "user_properties":
                properties["user_property"] = [tuple(pair) for pair in value]
            elif key in OUTBOUND_PROPERTIES:
                properties[OUTBOUND_PROPERTIES[key]] = value
        client.publish(
            event["topic"],
            event["payload"],
            qos=event.get("qos", 0),
            retain=event.get("retain", False),
            **properties,
        )


def _permanent(exc: MQTTConnectError) -> bool:
    """Refusals that no retry fixes: bad credentials, not authorised, banned, bad client id."""
    return getattr(exc, "_code", 0) in (2, 4, 5, 133, 134, 135, 138, 140)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__


async def _subscribed(
    client: _Client, subscriptions: list[Subscription], identifier: int | None
) -> tuple[int, ...]:
    """One SUBSCRIBE (with `identifier`, MQTT 5), its SUBACK's reason codes."""
    if identifier is not None:
        for subscription in subscriptions:
            subscription.subscription_identifier = identifier
    waiter: asyncio.Future[tuple[int, ...]] = asyncio.get_running_loop().create_future()
    client.subacks[client.subscribe(subscriptions)] = waiter
    return await waiter
