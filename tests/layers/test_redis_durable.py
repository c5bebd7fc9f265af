"""Durable channels: streams acknowledged after handling, taken over when a worker dies."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.exceptions import ChannelFull
from gateway.layers.redis import RedisChannelLayer
from tests.integration.redis import RedisServer
from tests.server.process import ROOT

from .conftest import redis_layer_config
from .helpers import WAIT

pytestmark = pytest.mark.integration


async def _nothing_delivered(layer: RedisChannelLayer, channel: str, wait: float) -> bool:
    try:
        await asyncio.wait_for(layer.receive_delivery(channel), wait)
    except TimeoutError:
        return True
    return False


@pytest.fixture
async def durable_layers(redis_server: RedisServer) -> AsyncIterator[list[RedisChannelLayer]]:
    """Two layers (two processes, as far as Redis can tell) with durable `jobs.*`."""
    config = redis_layer_config(redis_server.url, durable=["jobs.*"], claim_after=0.5)
    layers = [RedisChannelLayer(**config), RedisChannelLayer(**config)]
    yield layers
    await layers[0].flush()
    for layer in layers:
        await layer.close()


async def test_an_acknowledged_message_is_not_delivered_again(
    durable_layers: list[RedisChannelLayer],
) -> None:
    first, second = durable_layers
    await first.send("jobs.a", {"type": "job.run", "n": 1})
    delivery = await asyncio.wait_for(second.receive_delivery("jobs.a"), WAIT)
    assert delivery.message == {"type": "job.run", "n": 1}
    await delivery.ack()
    await delivery.ack()  # idempotent
    assert await _nothing_delivered(first, "jobs.a", 1.0)


async def test_an_unacknowledged_message_is_taken_over(
    durable_layers: list[RedisChannelLayer],
) -> None:
    first, second = durable_layers
    await first.send("jobs.b", {"type": "job.run", "n": 2})
    abandoned = await asyncio.wait_for(first.receive_delivery("jobs.b"), WAIT)
    # `first` never acknowledges, as if its worker died: after claim_after, `second` gets it.
    retried = await asyncio.wait_for(second.receive_delivery("jobs.b"), WAIT)
    assert retried.message == abandoned.message == {"type": "job.run", "n": 2}
    await retried.ack()
    assert await _nothing_delivered(first, "jobs.b", 1.0)


async def test_plain_receive_acknowledges_at_once(
    durable_layers: list[RedisChannelLayer],
) -> None:
    first, second = durable_layers
    await first.send("jobs.c", {"type": "job.run", "n": 3})
    assert await asyncio.wait_for(first.receive("jobs.c"), WAIT) == {"type": "job.run", "n": 3}
    assert await _nothing_delivered(second, "jobs.c", 1.0)


async def test_messages_sent_before_any_worker_are_kept_in_order(
    durable_layers: list[RedisChannelLayer],
) -> None:
    first, _ = durable_layers
    for n in range(5):
        await first.send("jobs.queue", {"type": "job.run", "n": n})
    received = []
    for _ in range(5):
        delivery = await asyncio.wait_for(first.receive_delivery("jobs.queue"), WAIT)
        received.append(delivery.message["n"])
        await delivery.ack()
    assert received == [0, 1, 2, 3, 4]


async def test_a_durable_channel_holds_a_job_queue_backlog_by_default(
    durable_layers: list[RedisChannelLayer],
) -> None:
    # deploy/README.md's CHANNEL_LAYERS: durable jobs.*, no capacity set.
    first, second = durable_layers
    for n in range(250):  # far past the normal channels' capacity of 100
        await first.send("jobs.backlog", {"type": "job.run", "n": n})
    await first.group_add("crew", "jobs.backlog")
    await first.group_send("crew", {"type": "job.run", "n": 250})
    received = []
    for _ in range(251):
        delivery = await asyncio.wait_for(second.receive_delivery("jobs.backlog"), WAIT)
        received.append(delivery.message["n"])
        await delivery.ack()
    assert received == list(range(251))


async def test_channel_capacity_patterns_bound_durable_channels_too(
    durable_layers: list[RedisChannelLayer],
) -> None:
    first, _ = durable_layers
    capped = RedisChannelLayer(
        **redis_layer_config(first.hosts[0].url or "", prefix=first.prefix)
        | {"durable": ["jobs.*"], "channel_capacity": {"jobs.tiny": 1}}
    )
    try:
        await capped.send("jobs.tiny", {"type": "job.run"})
        with pytest.raises(ChannelFull):
            await capped.send("jobs.tiny", {"type": "job.run"})
    finally:
        await capped.close()


async def test_durable_capacity_and_group_send(durable_layers: list[RedisChannelLayer]) -> None:
    first, _ = durable_layers
    small = RedisChannelLayer(
        **redis_layer_config(first.hosts[0].url or "", prefix=first.prefix, capacity=2)
        | {"durable": ["jobs.*"], "durable_capacity": 2}
    )
    try:
        await small.group_add("crew", "jobs.crew")
        await small.group_add("crew", "plain-member")
        await small.group_send("crew", {"type": "job.run", "n": 1})
        await small.send("jobs.crew", {"type": "job.run", "n": 2})
        with pytest.raises(ChannelFull):
            await small.send("jobs.crew", {"type": "job.run", "n": 3})
        await small.group_send("crew", {"type": "job.run", "n": 4})  # skipped for jobs.crew
        for n in (1, 2):
            delivery = await asyncio.wait_for(small.receive_delivery("jobs.crew"), WAIT)
            assert delivery.message["n"] == n
            await delivery.ack()
        assert (await asyncio.wait_for(small.receive("plain-member"), WAIT))["n"] == 1
        assert (await asyncio.wait_for(small.receive("plain-member"), WAIT))["n"] == 4
    finally:
        await small.close()


async def test_durable_receive_survives_a_restart(own_redis_server: RedisServer) -> None:
    config = redis_layer_config(own_redis_server.url, durable=["jobs.*"], claim_after=0.5)
    layer = RedisChannelLayer(**config)
    try:
        waiting = asyncio.create_task(layer.receive_delivery("jobs.restart"))
        await asyncio.sleep(0.2)
        await asyncio.to_thread(own_redis_server.restart)
        await asyncio.sleep(0.3)
        assert not waiting.done()
        await layer.send("jobs.restart", {"type": "job.run", "n": 9})
        delivery = await asyncio.wait_for(waiting, WAIT)
        assert delivery.message == {"type": "job.run", "n": 9}
        await delivery.ack()
    finally:
        await layer.flush()
        await layer.close()


# The worker process: `gateway worker jobs.work`, killed mid-message.


def _spawn_worker(server: RedisServer, prefix: str, markers: Path) -> subprocess.Popen[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}
    env.update(
        DJANGO_SETTINGS_MODULE="tests.integration.redis_settings",
        GATEWAY_TEST_REDIS_URL=server.url,
        GATEWAY_TEST_REDIS_PREFIX=prefix,
        GATEWAY_TEST_MARKERS=str(markers),
        PYTHONUNBUFFERED="1",
    )
    argv = [sys.executable, "-m", "gateway", "worker", "jobs.work"]
    argv += ["--app", "tests.layers.durable_app:application"]
    proc = subprocess.Popen(
        argv,
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=(markers / f"worker-{time.monotonic_ns()}.log").open("w"),
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:  # ends (and fails below) if the worker dies before it is ready
        if line.strip() == "gateway: ready":
            return proc
    raise AssertionError(f"the worker exited with {proc.wait()} before it was ready")


async def _wait_for(markers: Path, pattern: str) -> list[Path]:
    async with asyncio.timeout(60):  # generous: only there to avoid hanging
        while not (found := await asyncio.to_thread(lambda: list(markers.glob(pattern)))):
            await asyncio.sleep(0.05)
    return found


async def test_a_worker_killed_mid_message_loses_nothing(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    prefix = redis_layer_config()["prefix"]
    layer = RedisChannelLayer(
        **redis_layer_config(redis_server.url, prefix=prefix, durable=["jobs.*"])
    )
    first = await asyncio.to_thread(_spawn_worker, redis_server, prefix, tmp_path)
    second: subprocess.Popen[str] | None = None
    try:
        await layer.send("jobs.work", {"type": "job.run", "n": 7})
        (started,) = await _wait_for(tmp_path, "started-*-7")
        assert started.name == f"started-{first.pid}-7"
        first.send_signal(signal.SIGKILL)  # mid-message: the handler is still sleeping
        first.wait(30)
        second = await asyncio.to_thread(_spawn_worker, redis_server, prefix, tmp_path)
        (handled,) = await _wait_for(tmp_path, "handled-*-7")
        assert handled.name == f"handled-{second.pid}-7"
        assert not (tmp_path / f"handled-{first.pid}-7").exists()
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(30)
        await layer.flush()
        await layer.close()
