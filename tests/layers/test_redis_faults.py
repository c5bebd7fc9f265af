"""The Redis layer when Redis goes away: nobody crashes, sends fail clearly, groups come back."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.exceptions import ChannelLayerUnavailable
from gateway.layers.redis import RedisChannelLayer
from tests.integration.redis import RedisServer

from .conftest import redis_layer_config
from .helpers import WAIT, receive

pytestmark = pytest.mark.integration


async def _send_until_received(
    sender: RedisChannelLayer, group: str, task: asyncio.Task[dict[str, Any]]
) -> dict[str, Any]:
    """group_send until the waiting receive gets it: memberships come back asynchronously."""
    async with asyncio.timeout(WAIT):
        while True:
            await sender.group_send(group, {"type": "test.after", "text": "back"})
            done, _ = await asyncio.wait({task}, timeout=0.1)
            if done:
                return task.result()


async def test_waiting_receivers_survive_a_restart_and_memberships_come_back(
    own_redis_server: RedisServer,
) -> None:
    config = redis_layer_config(own_redis_server.url)
    receiving = RedisChannelLayer(**config)
    sending = RedisChannelLayer(**config)  # another process, as far as Redis can tell
    try:
        specific = await receiving.new_channel()
        await receiving.group_add("room", specific)
        await receiving.group_add("room", "shared-worker")
        await receiving.group_send("room", {"type": "test.before"})
        assert (await receive(receiving, specific))["type"] == "test.before"
        assert (await receive(receiving, "shared-worker"))["type"] == "test.before"
        waiting = [
            asyncio.create_task(receiving.receive(specific)),
            asyncio.create_task(receiving.receive("shared-worker")),
        ]
        await asyncio.sleep(0.1)

        await asyncio.to_thread(own_redis_server.restart)  # comes back empty
        await asyncio.sleep(0.3)
        assert not any(task.done() for task in waiting)  # no receive raised

        for task in waiting:
            message = await _send_until_received(sending, "room", task)
            assert message == {"type": "test.after", "text": "back"}
        # And plain sends flow again too.
        await sending.send(specific, {"type": "test.direct"})
        assert (await receive(receiving, specific))["type"] in {"test.after", "test.direct"}
    finally:
        for layer in (receiving, sending):
            await layer.flush()
            await layer.close()


async def test_discarded_memberships_are_not_restored(own_redis_server: RedisServer) -> None:
    layer = RedisChannelLayer(**redis_layer_config(own_redis_server.url))
    try:
        stays, leaves = await layer.new_channel(), await layer.new_channel()
        await layer.group_add("room", stays)
        await layer.group_add("room", leaves)
        await layer.group_discard("room", leaves)
        task = asyncio.create_task(layer.receive(stays))
        left = asyncio.create_task(layer.receive(leaves))
        await asyncio.sleep(0.1)
        await asyncio.to_thread(own_redis_server.restart)
        assert (await _send_until_received(layer, "room", task))["type"] == "test.after"
        await asyncio.sleep(0.3)
        assert not left.done()
        left.cancel()
    finally:
        await layer.flush()
        await layer.close()


async def test_send_raises_unavailable_after_the_bounded_wait(
    own_redis_server: RedisServer,
) -> None:
    layer = RedisChannelLayer(**redis_layer_config(own_redis_server.url, unavailable_after=0.5))
    try:
        await layer.send("before", {"type": "test.message"})
        own_redis_server.stop()
        operations = [
            layer.send("down", {"type": "test.message"}),
            layer.group_send("room", {"type": "test.message"}),
            layer.group_add("room", "down"),
        ]
        for operation in operations:
            with pytest.raises(ChannelLayerUnavailable, match="unreachable"):
                await asyncio.wait_for(operation, WAIT)
    finally:
        own_redis_server.start()
        await layer.close()


async def test_receive_waits_while_redis_is_down_then_delivers(
    own_redis_server: RedisServer,
) -> None:
    layer = RedisChannelLayer(**redis_layer_config(own_redis_server.url))
    try:
        await asyncio.to_thread(own_redis_server.stop)
        task = asyncio.create_task(layer.receive("patient"))
        await asyncio.sleep(0.5)
        assert not task.done()
        await asyncio.to_thread(own_redis_server.start)
        await layer.send("patient", {"type": "test.message", "n": 1})
        assert await asyncio.wait_for(task, WAIT) == {"type": "test.message", "n": 1}
    finally:
        await layer.flush()
        await layer.close()


async def test_sends_recover_once_redis_is_back(own_redis_server: RedisServer) -> None:
    layer = RedisChannelLayer(**redis_layer_config(own_redis_server.url))
    try:
        await layer.send("recover", {"type": "test.message", "n": 1})
        await asyncio.to_thread(own_redis_server.restart)
        # The pooled connections broke with the restart; the send reconnects by itself.
        await layer.send("recover", {"type": "test.message", "n": 2})
        assert (await receive(layer, "recover"))["n"] == 2  # n=1 went with the old Redis
    finally:
        await layer.flush()
        await layer.close()
