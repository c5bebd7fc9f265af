"""What an MQTT adapter does itself with devices' messages: answers to commands and presence.

`DeviceLink.take` sees every inbound PUBLISH before the application: an answer to a command
or a status message no route covers is the gateway's own (handled here, then acknowledged);
everything else goes on to the application, after presence noted the device was seen.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from gateway.mqtt import PublishFunc, match_subscription
from gateway.types import MqttProperties
from protocol_adapters.mqtt.commands import CommandService
from protocol_adapters.mqtt.device_options import CommandsOptions, PresenceOptions
from protocol_adapters.mqtt.presence import PresenceTracker

__all__ = ["DeviceLink"]


async def _nothing() -> None:
    return None


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
        self, topic: str, payload: bytes, retain: bool, properties: MqttProperties
    ) -> Coroutine[Any, Any, None] | None:
        """None: the message is the application's. Else what handles it (then acknowledge)."""
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
