"""The hot path of `send`: what stays the same between sends to a channel, worked out once.

A plan holds a channel's shard, the keys and fixed arguments of its SEND call and their RESP
encoding, so that a send only encodes the time and its entry (see `scripts.SEND`), and checks
nothing it already checked (the name, the capacity patterns, the durable patterns).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

from gateway.layers.redis.connections import Script

if TYPE_CHECKING:
    from gateway.layers.redis.core import RedisChannelLayer

__all__ = ["Plans", "SendPlan", "make_plan"]


class SendPlan(NamedTuple):
    """How to send to one (not durable) channel."""

    shard: int
    keys: list[str]
    fixed: list[Any]  # capacity, expiry seconds, the part of the name after the '!'
    head: bytes  # EVALSHA, sha, keys and the fixed arguments, in RESP
    channel: bytes  # the name, as the entry carries it

    def command(self, now_ms: int, entry: bytes) -> bytes:
        """The whole EVALSHA call: the cached head, then the time and the entry."""
        now = b"%d" % now_ms
        return b"%b$%d\r\n%b\r\n$%d\r\n%b\r\n" % (self.head, len(now), now, len(entry), entry)

    def args(self, now_ms: int, entry: bytes) -> list[Any]:
        """The script's arguments, for the slow path (reconnection, NOSCRIPT)."""
        return [*self.fixed, now_ms, entry]


def make_plan(layer: RedisChannelLayer, script: Script, channel: str) -> SendPlan:
    """The plan of a channel whose name was checked and that is not durable."""
    index = layer.shard_index(channel)
    key = layer.list_key(channel, index)
    bang = channel.find("!")
    if bang >= 0:  # the process's inbox: its own bound, and the full channels
        keys, capacity = [key, key + "#"], layer.inbox_capacity
    else:
        keys, capacity = [key], layer.capacity_of(channel)
    fixed: list[Any] = [capacity, layer.expiry_seconds, channel[bang + 1 :]]
    head = script.head(keys, fixed, 2)
    return SendPlan(index, keys, fixed, head, channel.encode("ascii"))


class Plans(dict[str, SendPlan]):
    """The plans of the channels a layer sent to or received from (up to 4096 kept)."""

    def __init__(self, layer: RedisChannelLayer, script: Script) -> None:
        super().__init__()
        self.layer, self.script = layer, script

    def make(self, channel: str) -> SendPlan:
        """Make and keep the plan of a channel whose name was checked and that is not durable."""
        if len(self) > 4096:
            self.clear()
        plan = self[channel] = make_plan(self.layer, self.script, channel)
        return plan
