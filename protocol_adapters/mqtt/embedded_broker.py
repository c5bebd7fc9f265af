"""The embedded broker's shared state: sessions by client id, subscriptions, retained
messages, and routing a message to every session it reaches.

Connections (embedded_connections) drive it; it knows nothing of sockets, Django or the
application. Its rules, where MQTT 3.1.1 leaves a choice, follow Mosquitto:

* A client id belongs to the login that holds it (a connected client, or a stored persistent
  session): another login asking for it is refused, the same login takes it over and the
  older connection is closed (MQTT-3.1.4-2).
* A message matching several filters of one session is delivered once, at the highest QoS.
* Sessions of disconnected clients are kept for ``SESSION_EXPIRY`` seconds, with their
  queued messages bounded per session (`QueueLimits`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from protocol_adapters.mqtt.embedded_sessions import Outgoing, QueueLimits, Session
from protocol_adapters.mqtt.embedded_topics import RetainedStore, SubscriptionTree

__all__ = ["Broker", "BrokerLimits", "Login"]

logger = logging.getLogger("gateway.mqtt")


@dataclass(frozen=True, slots=True)
class Login:
    """Who a CONNECT authenticated as."""

    owner: str
    """The login that holds client ids: the device id, the username, or "" for none."""
    device_id: str | None = None
    topics: tuple[str, ...] = ()
    """Its topic ACL, ``{device_id}`` filled in; () when it may use any topic."""


@dataclass(frozen=True, slots=True)
class BrokerLimits:
    queue: QueueLimits = field(default_factory=QueueLimits)
    session_expiry: float = 86400.0
    max_retained: int = 100_000


class Broker:
    """Sessions, subscriptions and retained messages of one embedded broker."""

    def __init__(
        self, limits: BrokerLimits, on_dropped: Callable[[Session, int], None] | None = None
    ) -> None:
        self.limits = limits
        self.sessions: dict[str, Session] = {}
        self.subscriptions = SubscriptionTree()
        self.retained = RetainedStore(limits.max_retained)
        self._on_dropped = on_dropped
        self._expiry: dict[str, asyncio.TimerHandle] = {}

    # --- sessions ----------------------------------------------------------------------------

    def held_by_other(self, client_id: str, login: Login) -> bool:
        """Whether another login holds `client_id` (connected, or a stored session)."""
        session = self.sessions.get(client_id)
        return session is not None and session.owner != login.owner

    def open_session(self, client_id: str, login: Login, *, clean: bool) -> tuple[Session, bool]:
        """The session a connection gets (taking it over), and whether it was present."""
        old = self.sessions.get(client_id)
        if old is not None and old.link is not None:
            old.link.take_over()
            old.detach()
        self._cancel_expiry(client_id)
        if old is not None and not clean and not old.clean:
            return old, True
        if old is not None:
            self.drop_session(old)
        session = Session(client_id, login.owner, clean=clean, limits=self.limits.queue)
        self.sessions[client_id] = session
        return session, False

    def close_session(self, session: Session) -> None:
        """Its connection ended: drop a clean session, keep the others until they expire."""
        session.detach()
        if self.sessions.get(session.client_id) is not session:
            return  # already replaced by a newer connection's session
        if session.clean:
            self.drop_session(session)
        else:
            loop = asyncio.get_running_loop()
            delay = self.limits.session_expiry
            self._expiry[session.client_id] = loop.call_later(delay, self._expire, session)

    def _expire(self, session: Session) -> None:
        self._expiry.pop(session.client_id, None)
        if session.link is None and self.sessions.get(session.client_id) is session:
            logger.info("mqtt session %r expired", session.client_id)
            self.drop_session(session)

    def _cancel_expiry(self, client_id: str) -> None:
        timer = self._expiry.pop(client_id, None)
        if timer is not None:
            timer.cancel()

    def drop_session(self, session: Session) -> None:
        for topic_filter in session.subscriptions:
            self.subscriptions.remove(topic_filter, session.client_id)
        session.subscriptions.clear()
        if self.sessions.get(session.client_id) is session:
            del self.sessions[session.client_id]

    def clear(self) -> None:
        """Forget every session and retained message (the broker stops)."""
        for timer in self._expiry.values():
            timer.cancel()
        self._expiry.clear()
        for session in list(self.sessions.values()):
            self.drop_session(session)
        self.retained.clear()

    # --- subscriptions -----------------------------------------------------------------------

    def subscribe(self, session: Session, topic_filter: str, qos: int) -> list[Outgoing]:
        """Add (or replace) a subscription; return the retained messages it gets."""
        session.subscriptions[topic_filter] = qos
        self.subscriptions.add(topic_filter, session.client_id, qos)
        return [
            Outgoing(m.topic.encode(), m.payload, min(m.qos, qos), retain=True)
            for m in self.retained.matching(topic_filter)
        ]

    def unsubscribe(self, session: Session, topic_filter: str) -> None:
        if session.subscriptions.pop(topic_filter, None) is not None:
            self.subscriptions.remove(topic_filter, session.client_id)

    # --- routing -----------------------------------------------------------------------------

    def publish(self, topic: str, payload: bytes, qos: int, *, retain: bool = False) -> None:
        """Deliver a message to every matching session; retain it when asked."""
        if retain and not self.retained.put(topic, payload, qos):
            logger.warning("mqtt retained message on %r not stored: %d topics held", topic,
                           len(self.retained))  # fmt: skip
        encoded = topic.encode()
        for client_id, granted in self.subscriptions.match(topic).items():
            session = self.sessions.get(client_id)
            if session is None:
                continue
            dropped = session.deliver(Outgoing(encoded, payload, min(qos, granted)))
            if dropped and self._on_dropped is not None:
                self._on_dropped(session, dropped)
