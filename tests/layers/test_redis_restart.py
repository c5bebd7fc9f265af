"""A Redis restarted empty while group sends flow: none accepted afterwards reaches nobody."""

from __future__ import annotations

import asyncio
import time

import pytest

from gateway.exceptions import ChannelLayerUnavailable, ImproperlyConfiguredGateway
from gateway.layers.redis import RedisChannelLayer
from tests.integration.redis import RedisServer

from .conftest import redis_layer_config

pytestmark = pytest.mark.integration

SENDS = 1_000
PAUSE = 0.002  # between group sends: about 400 a second, the restart lands mid-stream


async def _collect(layer: RedisChannelLayer, channel: str, into: set[int]) -> None:
    while True:
        into.add((await layer.receive(channel))["n"])


async def test_no_group_send_accepted_after_a_restart_reaches_nobody(
    own_redis_server: RedisServer,
) -> None:
    config = redis_layer_config(own_redis_server.url, heartbeat=0.2, heartbeat_expiry=3.0)
    # The process holding the WebSocket consumers reconnects after a second or more (its
    # receive loop's backoff); the one handling the readings, never a member, at once.
    dashboard = RedisChannelLayer(**config | {"backoff_initial": 1.0, "backoff_max": 2.0})
    sender = RedisChannelLayer(**config)
    received: dict[str, set[int]] = {"socket": set(), "worker": set()}
    accepted: dict[int, float] = {}  # n -> when group_send returned (monotonic)
    refused = 0
    killed_at: list[float] = []
    try:
        socket = await dashboard.new_channel()
        await dashboard.group_add("readings", socket)
        await dashboard.group_add("readings", "dashboard-worker")
        collectors = [
            asyncio.create_task(_collect(dashboard, socket, received["socket"])),
            asyncio.create_task(_collect(dashboard, "dashboard-worker", received["worker"])),
        ]
        await sender.group_send("readings", {"type": "reading", "n": -1})
        await asyncio.sleep(0.5)  # a heartbeat or two: each process knows the other

        async def restart() -> None:
            await asyncio.sleep(SENDS * PAUSE / 3)
            await asyncio.to_thread(own_redis_server.stop)
            killed_at.append(time.monotonic())
            await asyncio.sleep(0.2)
            await asyncio.to_thread(own_redis_server.start)

        restarting = asyncio.create_task(restart())
        longest = 0.0  # the longest group_send: the outage plus the memberships' return
        for n in range(SENDS):
            try:
                began = time.monotonic()
                await sender.group_send("readings", {"type": "reading", "n": n})
                accepted[n] = time.monotonic()
                longest = max(longest, accepted[n] - began)
            except ChannelLayerUnavailable:
                refused += 1
            await asyncio.sleep(PAUSE)
        await restarting
        await asyncio.sleep(1.0)
        for task in collectors:
            task.cancel()

        after = {n for n, at in accepted.items() if at > killed_at[0]}
        lost = {name: sorted(after - got) for name, got in received.items()}
        print(
            f"sent {SENDS}, accepted {len(accepted)}, refused {refused},"
            f" accepted after the restart {len(after)},"
            f" received of those: socket {len(after & received['socket'])},"
            f" worker {len(after & received['worker'])}; longest group_send {longest:.2f}s"
        )
        assert after, "the restart should land mid-stream"
        assert lost == {"socket": [], "worker": []}
        assert sender.loop_state().liveness.recoveries + dashboard.loop_state().liveness.recoveries
    finally:
        for layer in (dashboard, sender):
            await layer.flush()
            await layer.close()


@pytest.mark.parametrize(("heartbeat", "expiry"), [(0, 5), (5, 2), (1, 1)])
def test_heartbeat_must_be_positive_and_below_its_expiry(heartbeat: float, expiry: float) -> None:
    with pytest.raises(ImproperlyConfiguredGateway, match="heartbeat must be positive"):
        RedisChannelLayer(heartbeat=heartbeat, heartbeat_expiry=expiry)
