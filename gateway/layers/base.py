"""What every channel layer shares: the Channels layer API, its naming rules and capacities."""

from __future__ import annotations

import fnmatch
import re
import secrets
import warnings
from collections.abc import Mapping
from typing import Any, ClassVar, Protocol

from gateway import tracing
from gateway.exceptions import ImproperlyConfiguredGateway, InvalidChannelName
from gateway.layers.names import token_hex
from gateway.types import Message

__all__ = ["BaseChannelLayer"]


class _Pattern(Protocol):
    def match(self, string: str) -> object: ...


class BaseChannelLayer:
    """Base class of channel layers: the Channels API, name checks and per-channel capacity."""

    MAX_NAME_LENGTH: ClassVar[int] = 100
    extensions: ClassVar[list[str]] = ["groups", "flush"]

    # re.ASCII: the rules promise ASCII names, and \d or \w would otherwise take any script.
    channel_name_regex: ClassVar[re.Pattern[str]] = re.compile(
        r"[a-zA-Z\d\-_.]+(![\d\w\-_.]*)?", re.ASCII
    )
    group_name_regex: ClassVar[re.Pattern[str]] = re.compile(r"[a-zA-Z\d\-_.]+", re.ASCII)
    #: The naming rule, ``.format("Channel")`` or ``.format("Group")``; Channels' wording,
    #: which users' tests match.
    invalid_name_error: ClassVar[str] = (
        f"{{}} name must be a valid unicode string with length < {MAX_NAME_LENGTH} containing"
        " only ASCII alphanumerics, hyphens, underscores, or periods."
    )

    def __init__(
        self,
        expiry: float = 60,
        capacity: int = 100,
        channel_capacity: Mapping[str | _Pattern, int] | None = None,
        group_expiry: float = 86400,
    ) -> None:
        _require_positive("expiry", expiry)
        _require_positive("capacity", capacity)
        _require_positive("group_expiry", group_expiry)
        self.expiry = expiry
        self.capacity = capacity
        self.group_expiry = group_expiry
        self.channel_capacity = self.compile_capacities(channel_capacity or {})
        # Identifies this layer instance inside process-specific channel names.
        self.client_prefix = secrets.token_hex(4)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # With the otel extra, sends carry the trace context ("_trace", gateway.tracing).
        if tracing.INSTALLED:
            tracing.trace_layer(cls)

    # The layer API (Channels' names and semantics).

    async def send(self, channel: str, message: Message) -> None:
        """Put a message on a channel; raise ChannelFull when the channel is at capacity."""
        raise NotImplementedError("send() should be implemented in a channel layer")

    async def receive(self, channel: str) -> dict[str, Any]:
        """Wait for the next message on a channel and return it."""
        raise NotImplementedError("receive() should be implemented in a channel layer")

    async def new_channel(self, prefix: str = "specific") -> str:
        """Return a new process-specific channel name."""
        return self.new_channel_name(prefix)

    def new_channel_name(self, prefix: str = "specific") -> str:
        """Make a unique process-specific channel name without any I/O."""
        return f"{prefix}.{self.client_prefix}!{token_hex(8)}"

    async def group_add(self, group: str, channel: str) -> None:
        """Add a channel to a group (groups extension)."""
        raise NotImplementedError("group_add() not implemented (groups extension)")

    async def group_discard(self, group: str, channel: str) -> None:
        """Remove a channel from a group, if it is in it (groups extension)."""
        raise NotImplementedError("group_discard() not implemented (groups extension)")

    async def group_send(self, group: str, message: Message) -> None:
        """Send a message to every channel of a group, skipping full ones (groups extension)."""
        raise NotImplementedError("group_send() not implemented (groups extension)")

    async def flush(self) -> None:
        """Drop every message and group membership (flush extension)."""
        raise NotImplementedError("flush() not implemented (flush extension)")

    async def close(self) -> None:
        """Release the backend's resources; the layer stays usable afterwards."""

    # Names.

    def require_valid_channel_name(self, name: object, receive: bool = False) -> bool:
        """Raise InvalidChannelName unless `name` is a valid channel name."""
        if (
            type(name) is not str
            or len(name) >= self.MAX_NAME_LENGTH
            or self.channel_name_regex.fullmatch(name) is None
        ):
            raise InvalidChannelName(
                f"invalid channel name {name!r}: {self.invalid_name_error.format('Channel')}"
                " A process-specific name adds '!' and a local part."
            )
        if receive and "!" in name and not name.endswith("!"):
            raise InvalidChannelName(
                f"invalid channel name {name!r}: receive() takes a specific channel name"
                " only up to and including the '!'"
            )
        return True

    def require_valid_group_name(self, name: object) -> bool:
        """Raise InvalidChannelName unless `name` is a valid group name."""
        if (
            type(name) is not str
            or len(name) >= self.MAX_NAME_LENGTH
            or self.group_name_regex.fullmatch(name) is None
        ):
            raise InvalidChannelName(
                f"invalid group name {name!r}: {self.invalid_name_error.format('Group')}"
            )
        return True

    def valid_channel_names(self, names: list[str], receive: bool = False) -> bool:
        """Raise InvalidChannelName unless `names` is a non-empty list of valid channel names."""
        if not isinstance(names, list) or not names:
            raise InvalidChannelName(f"names must be a non-empty list, got {names!r}")
        for name in names:
            self.require_valid_channel_name(name, receive=receive)
        return True

    def valid_channel_name(self, name: object, receive: bool = False) -> bool:
        """Deprecated in Channels: call `require_valid_channel_name` (`receive` is unused)."""
        warnings.warn(
            "valid_channel_name is deprecated: call require_valid_channel_name instead.",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.require_valid_channel_name(name)

    def valid_group_name(self, name: object) -> bool:
        """Deprecated in Channels: call `require_valid_group_name`."""
        warnings.warn(
            "valid_group_name is deprecated: call require_valid_group_name instead.",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.require_valid_group_name(name)

    def non_local_name(self, name: str) -> str:
        """Return a specific channel name up to and including its '!', else the whole name."""
        bang = name.find("!")
        return name if bang < 0 else name[: bang + 1]

    # Capacities.

    @staticmethod
    def compile_capacities(
        channel_capacity: Mapping[str | _Pattern, int],
    ) -> list[tuple[_Pattern, int]]:
        """Turn {glob or compiled regex: capacity} into an ordered list of (matcher, capacity)."""
        compiled: list[tuple[_Pattern, int]] = []
        for pattern, capacity in channel_capacity.items():
            _require_positive(f"channel_capacity[{pattern!r}]", capacity)
            if isinstance(pattern, str):
                compiled.append((re.compile(fnmatch.translate(pattern)), capacity))
            else:
                compiled.append((pattern, capacity))
        return compiled

    def get_capacity(self, channel: str) -> int:
        """Return the capacity of the first channel_capacity pattern matching, else the default."""
        for pattern, capacity in self.channel_capacity:
            if pattern.match(channel):
                return capacity
        return self.capacity


def _require_positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ImproperlyConfiguredGateway(
            f"channel layer CONFIG {name} must be a positive number, got {value!r}"
        )
