"""Commands that wait for the device: `request()` / `arequest()` and the store of their history.

The caller sends an ``mqtt.request`` event (docs/specs/mqtt.md, *Requests to devices*) on the
channel layer channel `REQUEST_CHANNEL` with a channel of its own to answer on; the process
holding the broker connection publishes the command with a correlation id, records it through
a `CommandStore`, and sends back the device's answer or its timeout. A caller on that
process's event loop hands the request to it directly (`serve_locally`), without the two hops
through the layer. Importing this module imports no protocol library and reads no settings.
"""

from __future__ import annotations

import asyncio
import json
import uuid
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal, Protocol, cast

from django.utils.module_loading import import_string

from gateway.exceptions import ChannelFull, CommandTimeout, ImproperlyConfiguredGateway
from gateway.types import MqttProperties, MqttRequestEvent

__all__ = [
    "DEFAULT_COMMAND_STORE",
    "GRACE",
    "REQUEST_CHANNEL",
    "CommandChange",
    "CommandResponse",
    "CommandStore",
    "arequest",
    "device_id_of",
    "load_command_store",
    "make_request_event",
    "request",
    "serve_locally",
]

REQUEST_CHANNEL: Final = "gateway.mqtt.request"
"""The channel layer channel the process holding the broker connection serves requests on."""
GRACE: Final = 5.0
"""Seconds past the timeout a caller waits for the outcome before it gives up on its own."""
DEFAULT_COMMAND_STORE: Final = "django_app.commands.DatabaseCommandStore"


@dataclass(frozen=True)
class CommandResponse:
    """A device's answer to a command."""

    request_id: str
    payload: bytes
    properties: MqttProperties = field(default_factory=lambda: MqttProperties())

    @property
    def text(self) -> str:
        """The payload as UTF-8 text (undecodable bytes replaced)."""
        return self.payload.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The payload as JSON; ValueError when it is not."""
        return json.loads(self.payload)


@dataclass(frozen=True)
class CommandChange:
    """One step of a command's history, as the adapter serving it records it."""

    kind: Literal["sent", "answered", "timed_out"]
    request_id: str
    at: datetime
    device_id: str = ""
    command: str = ""
    topic: str = ""
    payload: bytes = b""
    """The command's payload ("sent") or the device's answer ("answered")."""
    timeout: float = 0.0
    in_time: bool = True
    """For "answered": whether the caller still waited (else the answer came late)."""


class CommandStore(Protocol):
    """The history of commands (docs/specs/mqtt.md), written in batches off the round trip."""

    async def record(self, changes: Sequence[CommandChange]) -> list[str]:
        """Apply `changes` in order; the request ids of answers to commands it does not know.

        A "sent" for an unknown device is not kept; an answer to a command already answered
        changes nothing; a timeout only changes a command still "sent". Raise only when none
        of `changes` was kept: they are given again, with the next ones, at the next write.
        """


def load_command_store(setting: Any) -> CommandStore:
    """The store a ``STORE`` option names (a dotted path to a class), or the default."""
    path = DEFAULT_COMMAND_STORE if setting is None else setting
    if not isinstance(path, str):
        raise ImproperlyConfiguredGateway(f"COMMANDS['STORE'] must be a dotted path: {setting!r}")
    store: CommandStore = import_string(path)()
    return store


def device_id_of(device: object) -> str:
    """A device's id: a `Device` (anything with ``device_id``) or the id itself."""
    device_id = getattr(device, "device_id", device)
    if not isinstance(device_id, str) or not device_id:
        raise ValueError(f"a device or a device id is needed, got {device!r}")
    return device_id


def make_request_event(
    device: object,
    command: str,
    payload: object,
    timeout: float,
    *,
    qos: int = 1,
    reply_channel: str,
    max_payload: int | None = None,
) -> MqttRequestEvent:
    """Validate a command and return it as an ``mqtt.request``; MqttPublishError if bad."""
    from gateway.mqtt import MAX_PAYLOAD, make_publish_event

    device_id = device_id_of(device)
    limit = MAX_PAYLOAD if max_payload is None else max_payload
    # The command topic's own checks: its levels, its payload, its QoS.
    event = make_publish_event(f"{device_id}/{command}", payload, qos, max_payload=limit)
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0:
        raise ValueError(f"the timeout must be a positive number of seconds, got {timeout!r}")
    return {
        "type": "mqtt.request",
        "request_id": uuid.uuid4().hex,
        "device_id": device_id,
        "command": command,
        "payload": event["payload"],
        "qos": event.get("qos", 1),
        "timeout": float(timeout),
        "reply_channel": reply_channel,
    }


async def arequest(
    device: object,
    command: str,
    payload: object = b"",
    timeout: float = 10.0,
    *,
    qos: int = 1,
    alias: str = "default",
) -> CommandResponse:
    """Send `command` to a device and return its answer; CommandTimeout when none comes."""
    from gateway.layers import get_channel_layer

    layer = get_channel_layer(alias)
    if layer is None:
        raise ImproperlyConfiguredGateway(
            f"gateway.mqtt.request needs a channel layer, but CHANNEL_LAYERS has no {alias!r}"
        )
    local = _local_services.get(asyncio.get_running_loop(), {}).get(alias)
    reply_channel = "" if local is not None else await layer.new_channel("mqtt-request.")
    event = make_request_event(
        device, command, payload, timeout, qos=qos, reply_channel=reply_channel
    )
    try:
        async with asyncio.timeout(event["timeout"] + GRACE):
            if local is not None:  # served by this process: no hop through the layer
                outcome = await local.request(event)
            else:
                await _send_request(layer, event)
                outcome = await layer.receive(reply_channel)
    except TimeoutError:
        raise CommandTimeout(
            f"no outcome for {command!r} to {event['device_id']} within {timeout}s "
            f"(+{GRACE}s): is a gateway with COMMANDS serving {REQUEST_CHANNEL}?",
            request_id=event["request_id"],
        ) from None
    if outcome.get("type") == "mqtt.request.failed":
        raise ConnectionError(f"{command!r} to {event['device_id']}: {outcome.get('error')}")
    if outcome.get("type") != "mqtt.response":
        raise CommandTimeout(
            f"{event['device_id']} did not answer {command!r} within {timeout}s",
            request_id=event["request_id"],
        )
    properties = cast(MqttProperties, outcome.get("properties") or {})
    return CommandResponse(event["request_id"], bytes(outcome["payload"]), properties)


class LocalCommands(Protocol):
    """What serves requests in this process: an adapter's command service."""

    async def request(self, event: MqttRequestEvent) -> Mapping[str, Any]:
        """Publish the command and return its outcome event."""


_local_services: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, LocalCommands]] = (
    weakref.WeakKeyDictionary()
)


def serve_locally(alias: str, service: LocalCommands) -> Callable[[], None]:
    """Let callers on this event loop hand `alias`'s requests to `service` directly, as the
    process serving `REQUEST_CHANNEL`; returns the function that ends it."""
    services = _local_services.setdefault(asyncio.get_running_loop(), {})
    services[alias] = service

    def leave() -> None:
        if services.get(alias) is service:
            del services[alias]

    return leave


async def _send_request(layer: Any, event: MqttRequestEvent) -> None:
    """Put the request on `REQUEST_CHANNEL`, waiting (within its timeout) while it is full.

    The channel holds the layer's capacity (100 by default) of requests the serving process
    has not taken yet; a burst, or that process stalled for a moment, fills it. The caller
    then waits for room rather than fail a command the device never saw: in line behind the
    other waiting callers of this event loop, so that one of them at a time polls the layer,
    in arrival order, however many wait.
    """
    line = _waiting_line()
    if not line.locked():
        try:
            await layer.send(REQUEST_CHANNEL, dict(event))
            return
        except ChannelFull:
            pass
    try:
        async with asyncio.timeout(event["timeout"]), line:
            delay = 0.0
            while True:
                try:
                    await layer.send(REQUEST_CHANNEL, dict(event))
                    return
                except ChannelFull:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2 or 0.001, 0.01)
    except TimeoutError:
        raise ChannelFull(
            f"{REQUEST_CHANNEL} stayed full for {event['timeout']:g}s: the process serving "
            f"it is behind; {event['command']!r} to {event['device_id']} was not sent"
        ) from None


_lines: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


def _waiting_line() -> asyncio.Lock:
    """The callers of this event loop waiting for room on `REQUEST_CHANNEL` (FIFO)."""
    loop = asyncio.get_running_loop()
    line = _lines.get(loop)
    if line is None:
        line = _lines[loop] = asyncio.Lock()
    return line


def request(
    device: object,
    command: str,
    payload: object = b"",
    timeout: float = 10.0,
    *,
    qos: int = 1,
    alias: str = "default",
) -> CommandResponse:
    """`arequest` from sync code (a view, an admin action, a management command)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError(
            "gateway.mqtt.request() was called from a running event loop; "
            "use 'await gateway.mqtt.arequest(...)' in async code"
        )
    from asgiref.sync import async_to_sync

    return async_to_sync(arequest)(device, command, payload, timeout, qos=qos, alias=alias)
