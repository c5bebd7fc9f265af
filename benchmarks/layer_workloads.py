"""Workloads both channel-layer benchmarks run, on any layer with the Channels API."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from channels.exceptions import ChannelFull as ChannelsFull

from gateway.exceptions import ChannelFull

MESSAGE = {"type": "bench.message", "text": "hello world", "n": 0}
FULL = (ChannelFull, ChannelsFull)


async def fan_out(layer: Any, members: int, group: str = "bench", settle: float = 0.01) -> float:
    """Seconds from one group_send until every one of `members` waiting receivers has it.

    `settle` is how long the receivers get to be waiting before the clock starts (a pub/sub
    layer subscribes when a receive starts).
    """
    channels = [await layer.new_channel() for _ in range(members)]
    for channel in channels:
        await layer.group_add(group, channel)
    all_received = asyncio.get_running_loop().create_future()
    remaining = members

    async def receiver(channel: str) -> None:
        nonlocal remaining
        await layer.receive(channel)
        remaining -= 1
        if remaining == 0:
            all_received.set_result(None)

    tasks = [asyncio.create_task(receiver(channel)) for channel in channels]
    await asyncio.sleep(settle)
    started = time.perf_counter()
    await layer.group_send(group, MESSAGE)
    await asyncio.wait_for(all_received, 60)
    elapsed = time.perf_counter() - started
    await asyncio.gather(*tasks)
    for channel in channels:
        await layer.group_discard(group, channel)
    return elapsed
