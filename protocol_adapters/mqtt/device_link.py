"""What an MQTT adapter does itself with devices' messages: answers to commands and presence.

`DeviceLink.take` sees every inbound PUBLISH before the application: an answer to a command
or a status message no route covers is the gateway's own (handled here, then acknowledged);
everything else goes on to the application, after presence noted the device was seen.

On MQTT 5, Mosquitto delivers one copy of a message per matching subscription, so a status
topic that both the adapter (plainly, for the retained state) and a route (``$share/...``, or a
wider filter) subscribe to comes twice. The adapter's subscriptions and the application's then
carry different subscription identifiers (`APP_SUBSCRIPTION`, `OWN_SUBSCRIPTION`), and each copy
goes only where its subscription says: the adapter's copy to commands and presence, the
application's copy to the application.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, Final, Literal

from gateway.mqtt import PublishFunc, match_subscription
from gateway.types import MqttProperties
from protocol_adapters.mqtt.commands import CommandService
from protocol_adapters.mqtt.device_options import CommandsOptions, PresenceOptions
from protocol_adapters.mqtt.presence import PresenceTracker

__all__ = ["APP_SUBSCRIPTION", "OWN_SUBSCRIPTION", "Copy", "DeviceLink", "copy_of"]

APP_SUBSCRIPTION: Final = 1
"""The subscription identifier of the application's subscriptions (MQTT 5)."""
OWN_SUBSCRIPTION: Final = 2
"""The subscription identifier of the adapter's own subscriptions (MQTT 5)."""
Copy = Literal["app", "own"] | None
"""Whose subscription a copy of a message came through; None: unknown, or both."""


def copy_of(identifiers: object) -> Copy:
    """The `Copy` a PUBLISH's subscription identifiers (a list, or absent) say it is."""
    if not identifiers or not isinstance(identifiers, list):
        return None
    app, own = APP_SUBSCRIPTION in identifiers, OWN_SUBSCRIPTION in identifiers
    return None if app == own else "app" if app else "own"


async def _nothing() -> None:
    return None


def _matches(service: CommandService | PresenceTracker | None, topic: str) -> bool:
    """Whether `topic` is one of the service's own: an answer, a status topic."""
    if isinstance(service, CommandService):
        return service.options.response_topic.match(topic) is not None
    return service is not None and service.options.topic.match(topic) is not None


class DeviceLink:
    """The adapter's own subscriptions (answers, status topics) and what it does with them."""

    def __init__(
        self,
        app_filters: list[str],
        *,
        commands: CommandService | None = None,
        presence: PresenceTracker | None = None,
    ) -> None:
        self.app_filters = app_filters
        self.commands = commands
        self.presence = presence
        self._tasks: set[asyncio.Task[None]] = set()
        subscribed = self.filters
        # Whether answers and status topics come through a subscription of the adapter's own
        # (not one identical to a route's): the application's copies of them are then extra.
        self._answers_apart = bool(commands and set(commands.filters) & set(subscribed))
        self._status_apart = bool(presence and set(presence.filters) & set(subscribed))

    @classmethod
    def build(
        cls,
        app_filters: list[str],
        commands: CommandsOptions | None,
        presence: PresenceOptions | None,
        *,
        publish: PublishFunc,
        mqtt5: bool,
        alias: str,
        max_payload: int,
    ) -> DeviceLink | None:
        """The link for an adapter's ``COMMANDS`` and ``PRESENCE``; None when both are off."""
        if commands is None and presence is None:
            return None
        service = None
        if commands is not None:
            service = CommandService(
                commands, publish, mqtt5=mqtt5, alias=alias, max_payload=max_payload
            )
        tracker = PresenceTracker(presence) if presence is not None else None
        return cls(app_filters, commands=service, presence=tracker)

    @property
    def filters(self) -> list[str]:
        """The adapter's own subscriptions, never shared: each process needs every message."""
        own = [*(self.commands.filters if self.commands else [])]
        own += self.presence.filters if self.presence else []
        return [f for f in own if f not in self.app_filters]

    def services(self, stop: asyncio.Event) -> list[Coroutine[Any, Any, None]]:
        """The coroutines to run while the adapter runs."""
        found = [self.commands.serve(stop)] if self.commands else []
        return found + ([self.presence.run(stop)] if self.presence else [])

    def take(
        self,
        topic: str,
        payload: bytes,
        retain: bool,
        properties: MqttProperties,
        copy: Copy = None,
    ) -> Coroutine[Any, Any, None] | None:
        """None: the message is the application's. Else what handles it (then acknowledge)."""
        if copy == "app":
            return self._app_copy(topic, payload, retain, properties)
        own = self._own(topic, payload, retain, properties)
        if own is None and copy == "own":
            return _nothing()  # the application's subscription brings it its own copy
        return own

    def _app_copy(
        self, topic: str, payload: bytes, retain: bool, properties: MqttProperties
    ) -> Coroutine[Any, Any, None] | None:
        """The application's copy: what the adapter's own copy covers is not looked at again."""
        if self._answers_apart and _matches(self.commands, topic):
            return _nothing()  # answers are never the application's
        if self._status_apart and _matches(self.presence, topic):
            return None
        return self._own(topic, payload, retain, properties)

    def _own(
        self, topic: str, payload: bytes, retain: bool, properties: MqttProperties
    ) -> Coroutine[Any, Any, None] | None:
        if self.commands is not None:
            answer = self.commands.answer(topic, payload, properties)
            if answer is not None:
                return answer
        status = self.presence is not None and self.presence.observe(topic, payload, retain)
        if status and match_subscription(self.app_filters, topic) is None:
            return _nothing()
        return None

    def spawn(self, coroutine: Coroutine[Any, Any, None], done: Any = None) -> None:
        """Run `coroutine` in a task; `done()` after it, however it ended."""
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if done is not None:
            task.add_done_callback(lambda _: done())

    async def aclose(self) -> None:
        """Cancel what still runs."""
        if self.commands is not None:
            await self.commands.aclose()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
