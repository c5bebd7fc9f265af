"""Which sessions a topic reaches: subscriptions in a tree of topic levels, and retained
messages by topic.

A publish walks only the branches its levels can match (``+`` and ``#`` children beside the
literal one), so its cost follows the depth of the topic, not the number of subscriptions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from gateway.mqtt import topic_matches

__all__ = ["RetainedStore", "SubscriptionTree"]


class _Node:
    # A device's own filter (devices/<id>/commands) adds nodes of its own: those have either
    # children or subscribers, so the other one is the shared empty dict until it is needed.
    __slots__ = ("children", "subscribers")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = _NO_CHILDREN
        self.subscribers: dict[str, int] = _NO_SUBSCRIBERS
        """client id -> granted QoS, for the filter that ends at this node."""


_NO_CHILDREN: Final[dict[str, _Node]] = {}
_NO_SUBSCRIBERS: Final[dict[str, int]] = {}
"""Shared by every node without children or subscribers; never written to."""


class SubscriptionTree:
    """Topic filters of every session, matched against topic names by MQTT's rules."""

    def __init__(self) -> None:
        self._root = _Node()

    def add(self, topic_filter: str, client_id: str, qos: int) -> None:
        node = self._root
        for level in topic_filter.split("/"):
            child = node.children.get(level)
            if child is None:
                if node.children is _NO_CHILDREN:
                    node.children = {}
                child = node.children[level] = _Node()
            node = child
        if node.subscribers is _NO_SUBSCRIBERS:
            node.subscribers = {}
        node.subscribers[client_id] = qos

    def remove(self, topic_filter: str, client_id: str) -> None:
        path = [self._root]
        for level in topic_filter.split("/"):
            child = path[-1].children.get(level)
            if child is None:
                return
            path.append(child)
        path[-1].subscribers.pop(client_id, None)
        self._prune(path, topic_filter.split("/"))

    @staticmethod
    def _prune(path: list[_Node], levels: list[str]) -> None:
        for depth in range(len(levels), 0, -1):
            node = path[depth]
            if node.children or node.subscribers:
                return
            del path[depth - 1].children[levels[depth - 1]]

    def match(self, topic: str) -> dict[str, int]:
        """client id -> the highest QoS of its filters that match `topic`."""
        found: dict[str, int] = {}
        levels = topic.split("/")
        # Wildcards at the first level never match a $-topic (MQTT-4.7.2-1).
        wildcards_first = not topic.startswith("$")
        pending = [(self._root, 0)]  # a stack, not recursion: topics may have many levels
        while pending:
            node, index = pending.pop()
            children = node.children
            if index == len(levels):
                _merge(found, node.subscribers)
                if "#" in children:  # "a/#" matches "a" too
                    _merge(found, children["#"].subscribers)
                continue
            if index or wildcards_first:
                if "#" in children:
                    _merge(found, children["#"].subscribers)
                if "+" in children:
                    pending.append((children["+"], index + 1))
            literal = children.get(levels[index])
            if literal is not None:
                pending.append((literal, index + 1))
        return found


def _merge(found: dict[str, int], subscribers: dict[str, int]) -> None:
    for client_id, qos in subscribers.items():
        if found.get(client_id, -1) < qos:
            found[client_id] = qos


@dataclass(frozen=True, slots=True)
class Retained:
    topic: str
    payload: bytes
    qos: int


class RetainedStore:
    """The last retained message per topic, at most `limit` topics."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._messages: dict[str, Retained] = {}

    def __len__(self) -> int:
        return len(self._messages)

    def put(self, topic: str, payload: bytes, qos: int) -> bool:
        """Store (or, for an empty payload, clear) a topic's message; False when full."""
        if not payload:
            self._messages.pop(topic, None)  # MQTT-3.3.1-10/11: cleared, never stored
            return True
        if topic not in self._messages and len(self._messages) >= self.limit:
            return False
        self._messages[topic] = Retained(topic, payload, qos)
        return True

    def matching(self, topic_filter: str) -> list[Retained]:
        if "+" not in topic_filter and "#" not in topic_filter:
            found = self._messages.get(topic_filter)
            return [found] if found is not None else []
        return [m for m in self._messages.values() if topic_matches(topic_filter, m.topic)]

    def clear(self) -> None:
        self._messages.clear()
