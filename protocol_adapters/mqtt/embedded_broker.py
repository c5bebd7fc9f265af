"""amqtt's broker with the gateway's hooks where amqtt's plugin API cannot place them.

amqtt 0.12's plugin manager runs every event hook (``on_broker_message_received``, ...) as a
task of its own that nobody awaits: a hook that waits for the gateway's intake would only
pile up tasks, one per message. The hooks it does await (``authenticate``,
``topic_filtering``) get no payload, and ``topic_filtering`` also runs as a task per
receiving session for every message. So the broker loads no plugins at all (an event with
no plugin callback costs nothing) and this subclass overrides the five methods the
gateway needs, each awaited in line by amqtt:

* `_authenticate`: CONNECT, before CONNACK; refusing answers "not authorised".
* `add_subscription`: SUBSCRIBE, per filter; refusing answers return code 0x80 (failure).
* `_handle_message_delivery`: every inbound PUBLISH, in the publisher's own delivery loop;
  awaiting the intake here holds that loop, and the connection's `GatedReader` then stops
  reading its socket.
* `_handle_disconnect`: the will, on abnormal disconnects.
* `_client_message_loop`: when it ends on a DISCONNECT, amqtt drops the messages still in
  the client's queue; they are delivered here (the queue is never long when the broker
  keeps up, but under backpressure it holds up to the read-ahead). Then presence.

These are private methods of amqtt 0.12, hence the pin ``amqtt>=0.12.1,<0.13``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from amqtt.broker import Broker
from amqtt.contexts import ListenerConfig
from amqtt.mqtt.disconnect import DisconnectPacket
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.session import ApplicationMessage, Session

from protocol_adapters.mqtt.embedded_connections import Connection, GatedReader

__all__ = ["SUBSCRIBE_REFUSED", "BrokerHooks", "GatewayBroker", "connection_of"]

logger = logging.getLogger("gateway.mqtt")

SUBSCRIBE_REFUSED = 0x80
# amqtt adds this to every client's keep-alive, which its reader then uses as a read
# timeout it ignores; large, so that timeout never cuts a packet in half. The gateway
# enforces the real keep-alive itself (embedded_connections).
KEEP_ALIVE_OFFSET = 10**6


class BrokerHooks(Protocol):
    """What the broker asks the adapter."""

    async def authenticate(self, session: Session, listener: str) -> bool: ...

    def may_subscribe(self, connection: Connection, topic_filter: str) -> bool: ...

    async def inbound(self, connection: Connection, message: ApplicationMessage) -> bool: ...

    async def will(self, connection: Connection, session: Session) -> None: ...

    async def disconnected(self, connection: Connection) -> None: ...


def connection_of(handler: BrokerProtocolHandler | None) -> Connection | None:
    """The adapter's record of the connection a protocol handler reads from."""
    reader = handler.reader if handler is not None else None
    return reader.connection if isinstance(reader, GatedReader) else None


def broker_config(listener_names: list[str]) -> dict[str, Any]:
    """amqtt's config: external listeners (the adapter owns the sockets), no plugins."""
    listeners: dict[str, Any] = {"default": {"type": "external", "bind": "external"}}
    listeners.update({name: {"type": "external", "bind": "external"} for name in listener_names})
    return {
        "listeners": listeners,
        "plugins": {},
        "timeout_disconnect_delay": KEEP_ALIVE_OFFSET,
    }


class GatewayBroker(Broker):  # type: ignore[misc]  # amqtt ships no types
    """amqtt's Broker with authentication, ACL, intake and presence from `BrokerHooks`."""

    def __init__(self, hooks: BrokerHooks, listener_names: list[str]) -> None:
        self.hooks = hooks
        super().__init__(broker_config(listener_names))

    async def _authenticate(self, session: Session, listener: ListenerConfig) -> bool:
        name = next((n for n, cfg in self.listeners_config.items() if cfg is listener), "")
        try:
            return await self.hooks.authenticate(session, name)
        except Exception:
            logger.exception("mqtt authentication of %r failed with an error", session.client_id)
            return False

    async def add_subscription(self, subscription: tuple[str, int], session: Session) -> int:
        connection = connection_of(self._sessions.get(session.client_id or "", (None, None))[1])
        if connection is not None and not self.hooks.may_subscribe(connection, subscription[0]):
            return SUBSCRIBE_REFUSED
        granted: int = await super().add_subscription(subscription, session)
        return granted

    async def _handle_message_delivery(
        self,
        client_session: Session,
        handler: BrokerProtocolHandler,
        wait_deliver: asyncio.Future[Any],
    ) -> bool:
        message = wait_deliver.result()
        connection = connection_of(handler)
        refused = (
            message is not None
            and connection is not None
            and not await self.hooks.inbound(connection, message)
        )
        if refused:
            return True  # dropped and logged by the hook; the client stays connected
        keep: bool = await super()._handle_message_delivery(client_session, handler, wait_deliver)
        return keep

    async def _handle_disconnect(
        self,
        client_session: Session,
        handler: BrokerProtocolHandler,
        disconnect_waiter: asyncio.Future[Any],
    ) -> None:
        abnormal = not isinstance(disconnect_waiter.result(), DisconnectPacket)
        connection = connection_of(handler)
        if abnormal and client_session.will_flag and connection is not None:
            await self.hooks.will(connection, client_session)
        await super()._handle_disconnect(client_session, handler, disconnect_waiter)

    async def _client_message_loop(
        self, client_session: Session, handler: BrokerProtocolHandler
    ) -> None:
        try:
            await super()._client_message_loop(client_session, handler)
        finally:
            await self._deliver_leftovers(client_session, handler)
            connection = connection_of(handler)
            if connection is not None:
                await self.hooks.disconnected(connection)

    async def _deliver_leftovers(self, session: Session, handler: BrokerProtocolHandler) -> None:
        # Taken at once: amqtt's session monitor clears the queue of a gone clean session.
        queue = session.delivered_message_queue
        leftovers = [queue.get_nowait() for _ in range(queue.qsize())]
        for message in leftovers:
            delivered: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            delivered.set_result(message)
            await self._handle_message_delivery(session, handler, delivered)
