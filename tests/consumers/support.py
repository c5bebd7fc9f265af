"""A channel layer that records what consumers asked of it, for tests to inspect."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.test import override_settings

from gateway.layers import InMemoryChannelLayer, get_channel_layer

COUNTING_BACKEND = "tests.consumers.support.CountingLayer"


class CountingLayer(InMemoryChannelLayer):
    """The in-memory layer, counting channel names made and receives started."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.names_made: list[str] = []
        self.receives_started = 0
        self.members: dict[str, set[str]] = {}

    def new_channel_name(self, prefix: str = "specific") -> str:
        name = super().new_channel_name(prefix)
        self.names_made.append(name)
        return name

    async def receive(self, channel: str) -> dict[str, Any]:
        self.receives_started += 1
        return await super().receive(channel)

    async def group_add(self, group: str, channel: str) -> None:
        await super().group_add(group, channel)
        self.members.setdefault(group, set()).add(channel)

    async def group_discard(self, group: str, channel: str) -> None:
        await super().group_discard(group, channel)
        self.members.get(group, set()).discard(channel)


@contextmanager
def counting_layer(**aliases: str) -> Iterator[CountingLayer]:
    """Configure CHANNEL_LAYERS with a CountingLayer as "default" (plus other aliases)."""
    layers = {"default": {"BACKEND": COUNTING_BACKEND}}
    layers.update({alias: {"BACKEND": backend} for alias, backend in aliases.items()})
    with override_settings(CHANNEL_LAYERS=layers):
        layer = get_channel_layer()
        assert isinstance(layer, CountingLayer)
        yield layer
