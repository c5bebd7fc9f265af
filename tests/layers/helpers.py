"""Small helpers shared by the channel layer tests."""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.layers import BaseChannelLayer

# Generous: only there so a broken layer fails instead of hanging the run.
WAIT = 10.0


async def receive(layer: BaseChannelLayer, channel: str) -> dict[str, Any]:
    """Receive one message, failing instead of hanging when none comes."""
    return await asyncio.wait_for(layer.receive(channel), WAIT)


async def nothing_waiting(layer: BaseChannelLayer, channel: str) -> bool:
    """True when no message arrives on the channel within a short while."""
    try:
        await asyncio.wait_for(layer.receive(channel), 0.2)
    except TimeoutError:
        return True
    return False


async def waiting_receive(layer: BaseChannelLayer, channel: str) -> asyncio.Task[dict[str, Any]]:
    """Start a receive and give it time to start waiting."""
    task = asyncio.create_task(layer.receive(channel))
    await asyncio.sleep(0.05)
    assert not task.done()
    return task
