"""What the external-broker adapter changes in gmqtt 0.8, in one place, with a version check.

gmqtt has no hook for these, so `Client` overrides private parts of gmqtt's ``Client`` and its
package handler; `check_version` refuses a gmqtt outside the range they were written and
tested for (``gmqtt>=0.8,<0.9``), with a message naming what to install:

* ``deliver_to``: gmqtt's QoS 1/2 handlers, so each PUBLISH reaches the adapter with its
  packet id, synchronously from the read loop (gmqtt's ``on_message`` runs a task per message
  and never tells the packet id);
* ``acknowledge`` / ``_send_command_with_mid``: PUBACK / PUBREC sent by the adapter, only on
  the connection the message came in on, batched per loop iteration;
* ``reconnect``: gmqtt's own reconnect (fixed delay, no resubscribe) turned off;
* ``reserve_ids``: packet ids of a resumed session's unacknowledged publishes kept out of use;
* ``pause_reading``: backpressure on gmqtt's transport.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Callable, Iterable
from importlib.metadata import version
from typing import Any, Final, cast

from gmqtt import Client as _GmqttClient
from gmqtt.mqtt.constants import MQTTCommands

from gateway.exceptions import ImproperlyConfiguredGateway
from gateway.types import MqttProperties

__all__ = ["OUTBOUND_PROPERTIES", "Client", "Deliver", "check_version", "scope_properties"]

SUPPORTED: Final = ((0, 8), (0, 9))
"""The gmqtt versions the overrides were written for: at least the first, below the second."""


def check_version() -> None:
    """Refuse a gmqtt whose private parts these overrides may no longer match."""
    installed = version("gmqtt")
    numbers = tuple(int(part) for part in installed.split(".")[:2] if part.isdigit())
    if not SUPPORTED[0] <= numbers < SUPPORTED[1]:
        raise ImproperlyConfiguredGateway(
            f"gmqtt {installed} is installed; the external MQTT adapter needs gmqtt>=0.8,<0.9 "
            '(pip install "django-protocol-gateway[mqtt]")'
        )


# gmqtt's property names -> the scope's (docs/specs/mqtt.md).
_INBOUND_PROPERTIES = {
    "payload_format_id": "payload_format_indicator",
    "message_expiry_interval": "message_expiry_interval",
    "content_type": "content_type",
    "response_topic": "response_topic",
    "correlation_data": "correlation_data",
}
OUTBOUND_PROPERTIES = {scope: gmqtt for gmqtt, scope in _INBOUND_PROPERTIES.items()}
_ACK = struct.Struct("!BBH")
Deliver = Callable[["Client", str, bytes, int, "int | None", dict[str, Any]], None]
"""What receives each QoS 1/2 PUBLISH: client, topic, payload, QoS, packet id, properties."""


class Client(_GmqttClient):  # type: ignore[misc]  # gmqtt is untyped
    """One connection's gmqtt client, with gmqtt's reconnect turned off."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lost = asyncio.Event()
        self.lost_reason = "connection closed"
        self.subacks: dict[int, asyncio.Future[tuple[int, ...]]] = {}
        self._acks = bytearray()
        self._flush_scheduled = False
        # QoS 1/2 PUBLISHes handed on, and acknowledged: equal when none is pending.
        self.delivered = 0
        self.acknowledged = 0

    async def reconnect(self, delay: bool = False) -> None:
        """Called by gmqtt when the connection ends: report it, the adapter reconnects."""
        self.lost.set()

    def _send_command_with_mid(self, cmd: int, mid: int, dup: bool, reason_code: int = 0) -> None:
        # Only acknowledge on the connection the message came in on, while it is open.
        connection = self._connection
        if not self.lost.is_set() and connection is not None and not connection.is_closing():
            super()._send_command_with_mid(cmd, mid, dup, reason_code=reason_code)

    def deliver_to(self, deliver: Deliver) -> None:
        """Hand QoS 1/2 PUBLISHes to `deliver` with their packet id; `acknowledge` answers them.

        gmqtt calls its own handler with the packet id, but ``on_message`` without it, as a
        task per message; this keeps the read loop synchronous and the packet id known.
        """
        handler = self._package_handler

        def qos1(mid: int, payload: bytes, topic: str, properties: dict[str, Any]) -> None:
            self.delivered += 1
            deliver(self, topic, payload, 1, mid, properties)

        def qos2(mid: int, payload: bytes, topic: str, properties: dict[str, Any]) -> None:
            self.delivered += 1
            deliver(self, topic, payload, 2, mid, properties)

        handler._handle_qos_1_publish_packet = qos1
        handler._handle_qos_2_publish_packet = qos2

    def acknowledge(self, qos: int, mid: int) -> None:
        """PUBACK (QoS 1) or PUBREC (QoS 2) for a message the application is done with."""
        # The short form (no reason code: success) is valid in MQTT 3.1.1 and 5. Acks that
        # complete in one loop iteration leave in one write instead of one write each.
        command = MQTTCommands.PUBACK if qos == 1 else MQTTCommands.PUBREC
        self.acknowledged += 1
        self._acks += _ACK.pack(command, 2, mid)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_acks)

    def _flush_acks(self) -> None:
        acks, self._acks, self._flush_scheduled = bytes(self._acks), bytearray(), False
        # Only on the connection the messages came in on, while it is open.
        connection = self._connection
        if not self.lost.is_set() and connection is not None and not connection.is_closing():
            connection.send_package(acks)

    def pause_reading(self, pause: bool) -> None:
        """Stop or resume reading the socket: backpressure for what no window bounds."""
        transport = getattr(self._connection, "_transport", None)
        if transport is None or transport.is_closing():
            return
        if pause:
            transport.pause_reading()
        else:
            transport.resume_reading()

    def reserve_ids(self, packet_ids: Iterable[int]) -> None:
        """Keep these packet ids out of use (a resumed session's unacknowledged publishes)."""
        self._package_handler.id_generator._used_ids.update(packet_ids)

    async def close(self) -> None:
        """Send DISCONNECT if still connected, and close the socket."""
        self.lost.set()
        with contextlib.suppress(Exception):
            if self._connection is not None and not self._connection.is_closing():
                await self.disconnect()
            elif self._connection is not None:
                await self._connection.close()


def scope_properties(properties: dict[str, Any]) -> MqttProperties:
    """gmqtt's parsed PUBLISH properties (name -> list of values) as the scope's."""
    scope: dict[str, Any] = {}
    for name, values in properties.items():
        key = _INBOUND_PROPERTIES.get(name)
        if key is not None and values:
            scope[key] = values[0]
    if "user_property" in properties:
        scope["user_properties"] = [list(pair) for pair in properties["user_property"]]
    return cast(MqttProperties, scope)
