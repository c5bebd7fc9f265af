"""Who an MQTT client is: its login checked, its client id and will allowed, its topic ACL.

Runs on CONNECT, before any session is looked up, taken over or deleted: a refusal touches
nothing. The device store (AUTH "devices") checks the password, in the turn the adapter's
`LoginGate` gives it; a login the gate refuses gets CONNACK 3 (server unavailable: too many
checks wait) or 5 (not authorized: too many failures from its address), unchecked. A client
id that is another device's id is reserved to that device.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import partial

from gateway.devices import DeviceStore
from gateway.logins import LoginGate, LoginRefused
from protocol_adapters.mqtt.embedded_acl import acl_for, may_publish
from protocol_adapters.mqtt.embedded_broker import Login
from protocol_adapters.mqtt.wire import (
    CONNACK_ID_REJECTED,
    CONNACK_NOT_AUTHORIZED,
    CONNACK_SERVER_UNAVAILABLE,
    Connect,
)

__all__ = ["log_in"]

logger = logging.getLogger("gateway.mqtt")


async def log_in(
    connect: Connect,
    client: str,
    devices: DeviceStore | None,
    acl: str | Sequence[str] | None,
    *,
    gate: LoginGate,
    address: str,
) -> Login | int:
    """The client's `Login`, or the CONNACK return code refusing it (logged, with `client`)."""
    username, patterns = connect.username or "", acl
    device_id: str | None = None
    if devices is not None:
        attempt = partial(devices.authenticate, username, _text(connect.password))
        try:
            device_id = await gate.check(address, attempt)
        except LoginRefused as refused:
            logger.warning("mqtt client %s refused unchecked: %s", client, refused)
            busy = refused.reason == "busy"
            return CONNACK_SERVER_UNAVAILABLE if busy else CONNACK_NOT_AUTHORIZED
        if device_id is None:
            logger.warning("mqtt client %s refused: wrong device id or password", client)
            return CONNACK_NOT_AUTHORIZED
        if connect.client_id != device_id and await devices.exists(connect.client_id):
            logger.warning("mqtt client %s refused: the client id is another device's", client)
            return CONNACK_ID_REJECTED
        patterns = await devices.topics_for(device_id) or patterns
    owner = device_id or username
    topics: tuple[str, ...] = ()
    if patterns is not None:
        found = acl_for([patterns] if isinstance(patterns, str) else patterns,
                        owner or connect.client_id)  # fmt: skip
        if found is None:
            logger.warning("mqtt client %s refused: its id cannot name topics", client)
            return CONNACK_NOT_AUTHORIZED
        topics = found
    will = connect.will
    if will is not None and topics and not may_publish(topics, will.topic):
        logger.warning("mqtt client %s refused: will topic %r is not its own", client, will.topic)
        return CONNACK_NOT_AUTHORIZED
    return Login(owner=owner, device_id=device_id, topics=topics)


def _text(value: str | bytes | None) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value or ""
