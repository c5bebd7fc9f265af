"""`run_one_event`: call an ASGI application on a scope that carries exactly one event.

MQTT messages, emails and text messages are such scopes (docs/specs): ``receive()`` gives the
one event, a second ``receive()`` waits until the adapter stops and then gives the protocol's
disconnect event; ``send()`` is the protocol's to check. Every adapter, every test
communicator and dead-letter replay run applications through this one function, so they
cannot drift apart.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from gateway.types import ASGIApp, Message

__all__ = ["run_one_event"]


async def run_one_event(
    app: ASGIApp,
    scope: Mapping[str, Any],
    event: Message,
    send: Callable[[Message], Awaitable[None]],
    *,
    stopped: asyncio.Event | None = None,
) -> None:
    """Run `app` on a copy of `scope`; its first receive gets `event`.

    Later receives wait for `stopped` (not given: the caller has no life to stop, as in a
    replay) and get ``{"type": "<protocol>.disconnect"}``, the protocol being the one of
    `event`'s type.
    """
    delivered = False

    async def receive() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return event
        if stopped is not None:
            await stopped.wait()
        return {"type": str(event["type"]).partition(".")[0] + ".disconnect"}

    await app(dict(scope), receive, send)
