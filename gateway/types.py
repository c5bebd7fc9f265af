"""ASGI types shared by every part of the gateway: the callable, scopes and events."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Literal, NotRequired, TypedDict

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
#: What routers accept as an application: any ASGI callable, however its own annotations spell
#: the scope (django-stubs types Django's ASGIHandler with ``dict``, which ASGIApp would refuse).
AnyASGIApp = Callable[..., Awaitable[Any]]

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


class MqttRequestEvent(TypedDict):
    """A command for a device, sent on the channel layer channel ``gateway.mqtt.request``."""

    type: Literal["mqtt.request"]
    request_id: str
    device_id: str
    command: str
    payload: bytes
    qos: Literal[0, 1, 2]
    timeout: float
    reply_channel: str


class MqttResponseEvent(TypedDict):
    """The device's answer to a request, sent to the request's reply channel."""

    type: Literal["mqtt.response"]
    request_id: str
    payload: bytes
    properties: MqttProperties


class MqttRequestTimeoutEvent(TypedDict):
    """No answer came within the request's timeout; sent to its reply channel."""

    type: Literal["mqtt.request.timeout"]
    request_id: str
    timeout: float


# --- sms (docs/specs/sms.md) ----------------------------------------------------------------


class SmsMedia(TypedDict):
    """One attachment of an inbound MMS / WhatsApp message."""

    url: str
    content_type: str


SmsScope = TypedDict(
    "SmsScope",
    {
        "type": Literal["sms"],
        "asgi": ASGIVersions,
        "provider": str,
        "adapter": str,
        "from": str,
        "to": str,
        "whatsapp": bool,
        "country": str | None,
        "message_id": str,
        "media": list[SmsMedia],
        "extra": dict[str, str],
        "url_route": NotRequired[URLRoute],
        "state": NotRequired[dict[str, Any]],
    },
)
"""One inbound text message, handled like one HTTP request ("from" is a keyword)."""


class SmsMessageEvent(TypedDict):
    """The message, the first event an `sms` application receives."""

    type: Literal["sms.message"]
    body: str


class SmsDisconnectEvent(TypedDict):
    """Returned by a second `receive()` once the adapter stops."""

    type: Literal["sms.disconnect"]


class SmsReplyEvent(TypedDict):
    """Sent by the application to answer the sender (TwiML in the webhook response)."""

    type: Literal["sms.reply"]
    body: str


SmsSendEvent = TypedDict(
    "SmsSendEvent",
    {
        "type": Literal["sms.send"],
        "to": str,
        "body": str,
        "from": NotRequired[str],
        "media_urls": NotRequired[list[str]],
    },
)
"""Sent by the application to send an outbound message through the provider's REST API."""


# --- email (docs/specs/email.md) -------------------------------------------------------------


class EmailScope(TypedDict):
    """One inbound message for one accepted recipient, handled like one HTTP request."""

    type: Literal["email"]
    asgi: ASGIVersions
    source: str
    """"smtp", "imap", or the mail provider whose webhook posted it ("postmark", ...)."""
    adapter: str
    sender: str
    recipient: str
    recipients: list[str]
    peer: tuple[str, int] | None
    helo: str | None
    auth_user: str | None
    mailbox: str | None
    uid: int | None
    uidvalidity: int | None
    message_id: str | None
    attempt: int
    url_route: NotRequired[URLRoute]
    state: NotRequired[dict[str, Any]]


class EmailMessageEvent(TypedDict):
    """The message as raw RFC 5322 bytes, the first event an `email` application receives."""

    type: Literal["email.message"]
    raw: bytes


class EmailDisconnectEvent(TypedDict):
    """Returned by a second `receive()` once the adapter stops or gives up on the app."""

    type: Literal["email.disconnect"]


class EmailRejectEvent(TypedDict):
    """Sent by the application to refuse the message with an SMTP code."""

    type: Literal["email.reject"]
    code: NotRequired[int]
    reason: NotRequired[str]


class EmailSendEvent(TypedDict):
    """Sent by the application to mail someone, after it returned, via Django's backend."""

    type: Literal["email.send"]
    to: list[str]
    subject: str
    body: str
    html: NotRequired[str | None]
    from_email: NotRequired[str | None]
    cc: NotRequired[list[str]]
    bcc: NotRequired[list[str]]
    reply_to: NotRequired[list[str]]
    headers: NotRequired[dict[str, str]]
