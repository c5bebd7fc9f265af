"""Two `gateway run` processes sharing one Redis: groups span processes, one may die."""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.integration.redis import RedisServer, redis_server
from tests.server.process import GatewayProcess, gateway_env, spawn, wait_ready

__all__ = ["redis_server"]

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

APP = "tests.e2e.consumer_app:application"
WAIT = 30.0  # generous: only there to fail instead of hanging


@pytest.fixture
def cluster(
    redis_server: RedisServer, tmp_path: Path
) -> Iterator[tuple[GatewayProcess, GatewayProcess]]:
    """Two gateway processes on one Redis channel layer (their own key prefix)."""
    prefix = f"cluster-{secrets.token_hex(4)}"
    processes: list[GatewayProcess] = []
    try:
        for name in ("a", "b"):
            directory = tmp_path / name
            directory.mkdir()
            env = gateway_env(directory, settings="tests.integration.redis_settings")
            env.update(GATEWAY_TEST_REDIS_URL=redis_server.url, GATEWAY_TEST_REDIS_PREFIX=prefix)
            command = [sys.executable, "-m", "gateway", "run", APP, "--port", "0"]
            process = spawn(directory, env=env, command=command)
            processes.append(process)
            assert wait_ready(process), process.stderr()
        yield processes[0], processes[1]
    finally:
        for process in processes:
            process.kill()


@pytest.fixture
async def room_clients(
    cluster: tuple[GatewayProcess, GatewayProcess],
) -> AsyncIterator[dict[str, ClientConnection]]:
    """Clients a1, a2 on process A and b1, b2 on process B, all in room "cluster"."""
    first, second = cluster
    clients: dict[str, ClientConnection] = {}
    try:
        for name, process in [("a1", first), ("a2", first), ("b1", second), ("b2", second)]:
            client = await connect(process.ws_url + "/ws/room/cluster/", open_timeout=WAIT)
            clients[name] = client
            assert json.loads(await asyncio.wait_for(client.recv(), WAIT)) == {
                "joined": "room-cluster"
            }
        yield clients
    finally:
        for client in clients.values():
            await client.close()


async def _next_from(client: ClientConnection, sender: str) -> dict[str, Any]:
    """The next room message `sender` sent, skipping other senders'."""
    while True:
        message: dict[str, Any] = json.loads(await asyncio.wait_for(client.recv(), WAIT))
        if message.get("from") == sender:
            return message


async def _drain(client: ClientConnection) -> None:
    """Read what a client was sent until its connection closes (and raises)."""
    while True:
        await client.recv()


async def test_group_send_from_one_process_reaches_clients_of_the_other(
    room_clients: dict[str, ClientConnection],
) -> None:
    await room_clients["a1"].send(json.dumps({"from": "a1", "n": 0}))
    for name in ("a1", "a2", "b1", "b2"):
        assert await _next_from(room_clients[name], "a1") == {"from": "a1", "n": 0}
    await room_clients["b2"].send(json.dumps({"from": "b2", "n": 1}))
    for name in ("a1", "a2", "b1", "b2"):
        assert await _next_from(room_clients[name], "b2") == {"from": "b2", "n": 1}


async def test_one_process_killed_mid_load_the_other_carries_on(
    cluster: tuple[GatewayProcess, GatewayProcess],
    room_clients: dict[str, ClientConnection],
) -> None:
    first, _ = cluster
    killed = asyncio.Event()

    async def load_from_a() -> int:
        sent = 0
        try:
            while True:
                await room_clients["a1"].send(json.dumps({"from": "a1", "n": sent}))
                sent += 1
                await asyncio.sleep(0.005)
        except ConnectionClosed:
            return sent

    async def load_from_b(count: int) -> list[int]:
        """b1 sends, waiting for its own copy each time; b2 must see every one, in order."""
        seen = []
        for n in range(count):
            if n == count // 3:
                first.proc.kill()  # SIGKILL, mid-load
                await asyncio.to_thread(first.proc.wait, WAIT)
                killed.set()
            await room_clients["b1"].send(json.dumps({"from": "b1", "n": n}))
            assert (await _next_from(room_clients["b1"], "b1"))["n"] == n
            seen.append((await _next_from(room_clients["b2"], "b1"))["n"])
        return seen

    a_load = asyncio.create_task(load_from_a())
    seen = await asyncio.wait_for(load_from_b(150), 2 * WAIT)
    assert killed.is_set()
    assert seen == list(range(150))
    assert await asyncio.wait_for(a_load, WAIT) > 0  # A's clients were cut off by the kill
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(_drain(room_clients["a2"]), WAIT)
