"""Exceptions raised by the gateway.

GatewayError
├── ImproperlyConfiguredGateway   a bad GATEWAY / CHANNEL_LAYERS setting
├── ChannelLayerError
│   ├── ChannelFull               the channel is at capacity
│   ├── InvalidChannelLayerError  the layer alias or backend is unusable
│   ├── InvalidChannelName        a channel or group name breaks the naming rules
│   ├── MessageTypeError          a message that is not a dict with a "type"
│   ├── UnserializableMessage     a message value the layers cannot carry
│   └── ChannelLayerUnavailable   the backend cannot be reached in time
├── RouteNotFound                 no route matched (a ValueError, as in Channels)
├── UnknownProtocol               no application for the scope type (a ValueError)
├── UnknownMessageType            a consumer has no handler for a message type (a ValueError)
├── SmsSendError                  the SMS provider refused an outbound message or was unreachable
│   └── SmsOptedOut               the recipient opted out (STOP); nothing was sent
├── CommandTimeout                a device did not answer a command in time (a TimeoutError)
└── DeviceStateTooLarge           a device's state would pass DEVICE_STATE_MAX_BYTES (a ValueError)

StopConsumer, AcceptConnection, DenyConnection, RequestAborted: control flow raised
inside consumers, as in Channels.
"""

from __future__ import annotations

__all__ = [
    "AcceptConnection",
    "ChannelFull",
    "ChannelLayerError",
    "ChannelLayerUnavailable",
    "CommandTimeout",
    "DenyConnection",
    "DeviceStateTooLarge",
    "GatewayError",
    "ImproperlyConfiguredGateway",
    "InvalidChannelLayerError",
    "InvalidChannelName",
    "MessageTypeError",
    "RequestAborted",
    "RouteNotFound",
    "SmsOptedOut",
    "SmsSendError",
    "StopConsumer",
    "UnknownMessageType",
    "UnknownProtocol",
    "UnserializableMessage",
]


class GatewayError(Exception):
    """Base class of every error the gateway raises."""


class ImproperlyConfiguredGateway(GatewayError):
    """A GATEWAY or CHANNEL_LAYERS setting is wrong; the message names the setting."""


class ChannelLayerError(GatewayError):
    """Base class of channel layer errors."""


class ChannelFull(ChannelLayerError):
    """The channel already holds its capacity of messages."""


class InvalidChannelLayerError(ChannelLayerError, ValueError):
    """The channel layer alias is unknown or its backend cannot be built."""


class InvalidChannelName(ChannelLayerError, TypeError):
    """A channel or group name breaks the naming rules."""


class MessageTypeError(ChannelLayerError, TypeError):
    """A layer message is not a dict, or has no string "type"."""


class UnserializableMessage(ChannelLayerError, TypeError):
    """A message holds a value the channel layers cannot carry between processes."""


class ChannelLayerUnavailable(ChannelLayerError):
    """The channel layer's backend could not be reached within the configured wait."""


class RouteNotFound(GatewayError, ValueError):
    """No route of a router matched the scope."""

    #: The routes do not change while the process runs: the event is dead-lettered at once.
    retryable = False


class UnknownProtocol(GatewayError, ValueError):
    """ProtocolTypeRouter has no application for the scope's type."""


class UnknownMessageType(GatewayError, ValueError):
    """A consumer received a message type it has no handler method for."""


class SmsSendError(GatewayError):
    """The SMS provider refused an outbound message, or could not be reached after retries."""

    def __init__(self, message: str, *, status: int | None = None, code: int | None = None):
        super().__init__(message)
        self.status = status
        self.code = code


class SmsOptedOut(SmsSendError):
    """The recipient opted out (STOP); nothing was sent to it."""

    #: Only the recipient can opt in again (START): a retry would be refused the same way.
    retryable = False


class CommandTimeout(GatewayError, TimeoutError):
    """A device did not answer a command (`gateway.mqtt.request`) within its timeout.

    The command stays in the history; an answer that comes later is recorded there.
    """

    def __init__(self, message: str, *, request_id: str) -> None:
        super().__init__(message)
        self.request_id = request_id


class DeviceStateTooLarge(GatewayError, ValueError):
    """A device's state, serialized as JSON, would pass ``GATEWAY["DEVICE_STATE_MAX_BYTES"]``.

    Nothing was saved; the device keeps its previous state.
    """

    def __init__(self, message: str, *, device_id: str, size: int, limit: int) -> None:
        super().__init__(message)
        self.device_id = device_id
        self.size = size
        self.limit = limit


class StopConsumer(Exception):
    """Raised in a consumer to stop it cleanly."""


class AcceptConnection(Exception):
    """Raised in a WebSocket connect handler to accept the connection."""


class DenyConnection(Exception):
    """Raised in a WebSocket connect handler to refuse the connection."""


class RequestAborted(Exception):
    """The HTTP client went away before the request body was read."""
