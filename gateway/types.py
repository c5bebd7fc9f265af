"""ASGI types shared by every part of the gateway: the callable, scopes and events."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Literal, NotRequired, TypedDict

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ProtocolType = Literal["http", "websocket", "lifespan", "channel", "mqtt", "email", "sms"]


class ASGIVersions(TypedDict):
    version: str
    spec_version: NotRequired[str]


class URLRoute(TypedDict):
    """What a router matched: positional and keyword captures, merged across nested routers."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]


class ChannelScope(TypedDict):
    """A worker channel served by `ChannelNameRouter`, as in Channels."""

    type: Literal["channel"]
    channel: str
    asgi: NotRequired[ASGIVersions]


class LifespanScope(TypedDict):
    type: Literal["lifespan"]
    asgi: ASGIVersions
    state: NotRequired[dict[str, Any]]


class LifespanStartupEvent(TypedDict):
    type: Literal["lifespan.startup"]


class LifespanShutdownEvent(TypedDict):
    type: Literal["lifespan.shutdown"]


class WebSocketAcceptEvent(TypedDict):
    type: Literal["websocket.accept"]
    subprotocol: NotRequired[str | None]
    headers: NotRequired[list[tuple[bytes, bytes]]]


class WebSocketSendEvent(TypedDict):
    type: Literal["websocket.send"]
    bytes: NotRequired[bytes | None]
    text: NotRequired[str | None]


class WebSocketCloseEvent(TypedDict):
    type: Literal["websocket.close"]
    code: NotRequired[int]
    reason: NotRequired[str | None]


class WebSocketReceiveEvent(TypedDict):
    type: Literal["websocket.receive"]
    bytes: NotRequired[bytes | None]
    text: NotRequired[str | None]


class WebSocketDisconnectEvent(TypedDict):
    type: Literal["websocket.disconnect"]
    code: int
    reason: NotRequired[str | None]


# --- mqtt (docs/specs/mqtt.md) ---------------------------------------------------------------


class MqttProperties(TypedDict, total=False):
    """MQTT 5 publish properties that were present on the packet."""

    payload_format_indicator: int
    message_expiry_interval: int
    content_type: str
    response_topic: str
    correlation_data: bytes
    user_properties: list[tuple[str, str]]


class MqttScope(TypedDict):
    """One inbound application message (a PUBLISH), handled like one HTTP request."""

    type: Literal["mqtt"]
    asgi: ASGIVersions
    topic: str
    qos: Literal[0, 1, 2]
    retain: bool
    dup: bool
    message_id: int | None
    client_id: str | None
    device_id: str | None
    broker: Literal["embedded", "external"]
    adapter: str
    subscription: str
    properties: NotRequired[MqttProperties]
    url_route: NotRequired[URLRoute]
    topic_remaining: NotRequired[str]
    state: NotRequired[dict[str, Any]]


class MqttMessageEvent(TypedDict):
    """The message, the first event an `mqtt` application receives."""

    type: Literal["mqtt.message"]
    payload: bytes


class MqttDisconnectEvent(TypedDict):
    """Returned by a second `receive()` once the adapter stops."""

    type: Literal["mqtt.disconnect"]


class MqttPublishEvent(TypedDict):
    """Sent by the application to publish a message."""

    type: Literal["mqtt.publish"]
    topic: str
    payload: bytes
    qos: NotRequired[Literal[0, 1, 2]]
    retain: NotRequired[bool]
    properties: NotRequired[MqttProperties]
