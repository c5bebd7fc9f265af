"""Two `gateway run` processes sharing one Redis (and one Mosquitto): groups span processes,
an MQTT `$share` group splits the messages between them, and one of them may die."""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.integration.mosquitto import Mosquitto, running_mosquitto
from tests.integration.redis import RedisServer, redis_server
from tests.mqtt.external_support import mosquitto_pub, read_events
from tests.server.process import GatewayProcess, gateway_env, spawn, wait_ready

__all__ = ["redis_server"]

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

APP = "tests.e2e.consumer_app:application"
MQTT_APP = "tests.e2e.cluster_app:application"
WAIT = 30.0  # generous: only there to fail instead of hanging


def start_cluster(tmp_path: Path, app: str, settings: str, **env: str) -> list[GatewayProcess]:
    """Two gateway processes, A and B, on one Redis channel layer; killed by the caller."""
    processes: list[GatewayProcess] = []
    try:
        for name in ("a", "b"):
            directory = tmp_path / name
            directory.mkdir()
            environment = gateway_env(directory, settings=settings)
            environment.update(env)
            command = [sys.executable, "-m", "gateway", "run", app, "--port", "0"]
            process = spawn(directory, env=environment, command=command)
            processes.append(process)
            assert wait_ready(process), process.stderr()
    except BaseException:
        for process in processes:
            process.kill()
        raise
    return processes


def redis_env(redis_server: RedisServer) -> dict[str, str]:
    """The channel layer's Redis, under a key prefix of the test's own."""
    prefix = f"cluster-{secrets.token_hex(4)}"
    return {"GATEWAY_TEST_REDIS_URL": redis_server.url, "GATEWAY_TEST_REDIS_PREFIX": prefix}


@pytest.fixture
def cluster(
    redis_server: RedisServer, tmp_path: Path
) -> Iterator[tuple[GatewayProcess, GatewayProcess]]:
    """Two gateway processes on one Redis channel layer (their own key prefix)."""
    processes = start_cluster(
        tmp_path, APP, "tests.integration.redis_settings", **redis_env(redis_server)
    )
    try:
        yield processes[0], processes[1]
    finally:
        for process in processes:
            process.kill()


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    with running_mosquitto() as started:
        yield started


@pytest.fixture
def mqtt_cluster(
    redis_server: RedisServer, broker: Mosquitto, tmp_path: Path
) -> Iterator[tuple[GatewayProcess, GatewayProcess, Path]]:
    """Two gateway processes on one Redis and one `$share` group of one Mosquitto, and the
    file their MQTT consumers record handled messages in."""
    events = tmp_path / "events.log"
    processes = start_cluster(
        tmp_path,
        MQTT_APP,
        "tests.e2e.cluster_settings",
        MQTT_TEST_URL=broker.url,
        MQTT_TEST_EVENTS=str(events),
        MQTT_TEST_SHARED_GROUP="cluster",
        **redis_env(redis_server),
    )
    try:
        yield processes[0], processes[1], events
    finally:
        for process in processes:
            process.kill()


@asynccontextmanager
async def joined(
    room: str, **placement: GatewayProcess
) -> AsyncIterator[dict[str, ClientConnection]]:
    """WebSocket clients (name -> process they connect to), all in `room`."""
    clients: dict[str, ClientConnection] = {}
    try:
        for name, process in placement.items():
            client = await connect(process.ws_url + f"/ws/room/{room}/", open_timeout=WAIT)
            clients[name] = client
            assert json.loads(await asyncio.wait_for(client.recv(), WAIT)) == {
                "joined": f"room-{room}"
            }
        yield clients
    finally:
        for client in clients.values():
            await client.close()


@pytest.fixture
async def room_clients(
    cluster: tuple[GatewayProcess, GatewayProcess],
) -> AsyncIterator[dict[str, ClientConnection]]:
    """Clients a1, a2 on process A and b1, b2 on process B, all in room "cluster"."""
    first, second = cluster
    async with joined("cluster", a1=first, a2=first, b1=second, b2=second) as clients:
        yield clients


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


async def _kill(process: GatewayProcess) -> None:
    """SIGKILL: no drain, no goodbye to its clients or brokers."""
    process.proc.kill()
    await asyncio.to_thread(process.proc.wait, WAIT)


async def _send_until_closed(client: ClientConnection, name: str) -> int:
    """Send numbered room messages until the connection dies; return how many went out."""
    sent = 0
    try:
        while True:
            await client.send(json.dumps({"from": name, "n": sent}))
            sent += 1
            await asyncio.sleep(0.005)
    except ConnectionClosed:
        return sent


async def _load_and_watch(
    name: str,
    sender: ClientConnection,
    watcher: ClientConnection,
    count: int,
    before_kill: Callable[[], Awaitable[None]],
) -> list[int]:
    """`sender`, in the room as `name`, sends `count` messages, waiting for its own copy each
    time; a third of the way it runs `before_kill`. Returns what `watcher` saw, in order."""
    seen = []
    for n in range(count):
        if n == count // 3:
            await before_kill()
        await sender.send(json.dumps({"from": name, "n": n}))
        assert (await _next_from(sender, name))["n"] == n
        seen.append((await _next_from(watcher, name))["n"])
    return seen


async def test_one_process_killed_mid_load_the_other_carries_on(
    cluster: tuple[GatewayProcess, GatewayProcess],
    room_clients: dict[str, ClientConnection],
) -> None:
    first, _ = cluster
    killed = asyncio.Event()

    async def kill_a() -> None:
        await _kill(first)  # SIGKILL, mid-load
        killed.set()

    a_load = asyncio.create_task(_send_until_closed(room_clients["a1"], "a1"))
    seen = await asyncio.wait_for(
        _load_and_watch("b1", room_clients["b1"], room_clients["b2"], 150, kill_a), 2 * WAIT
    )
    assert killed.is_set()
    assert seen == list(range(150))
    assert await asyncio.wait_for(a_load, WAIT) > 0  # A's clients were cut off by the kill
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(_drain(room_clients["a2"]), WAIT)


async def handled(events: Path, topic_name: str, count: int) -> list[tuple[int, str]]:
    """(pid, payload) of the messages on `topic_name` the consumers finished, once `count` are."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        rows = [row for row in read_events(events) if row[0] == "done" and row[2] == topic_name]
        if len(rows) >= count:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # room for a duplicate to show up, if there were one
    return [(pid, payload) for event, pid, name, payload in read_events(events)
            if event == "done" and name == topic_name]  # fmt: skip


async def test_groups_and_one_mqtt_share_span_both_processes(
    mqtt_cluster: tuple[GatewayProcess, GatewayProcess, Path], broker: Mosquitto
) -> None:
    first, second, events = mqtt_cluster
    async with joined("mixed", a1=first, b1=second, b2=second) as clients:
        await clients["a1"].send(json.dumps({"from": "a1", "n": 0}))
        for name in ("a1", "b1", "b2"):
            assert await _next_from(clients[name], "a1") == {"from": "a1", "n": 0}

    payloads = [f"m{n}" for n in range(40)]
    await mosquitto_pub(broker, "work/split", "\n".join(payloads), lines=True)
    done = await handled(events, "work/split", len(payloads))
    assert Counter(payload for _, payload in done) == Counter(payloads)  # each exactly once
    by_process = Counter(pid for pid, _ in done)
    assert set(by_process) == {first.proc.pid, second.proc.pid}, by_process  # both took a share


async def test_one_process_killed_mid_load_the_other_keeps_serving_groups_and_mqtt(
    mqtt_cluster: tuple[GatewayProcess, GatewayProcess, Path], broker: Mosquitto
) -> None:
    first, second, events = mqtt_cluster
    half_published = asyncio.Event()

    async def mqtt_load(count: int) -> None:
        """QoS 1 messages on work/before, one at a time, while the group load runs."""
        for n in range(count):
            if n == count // 2:
                half_published.set()
            await mosquitto_pub(broker, "work/before", f"p{n}")

    async def kill_a() -> None:
        await asyncio.wait_for(half_published.wait(), WAIT)
        await _kill(first)  # SIGKILL, with group and MQTT messages in flight

    async with joined("load", a1=first, b1=second, b2=second) as clients:
        a_load = asyncio.create_task(_send_until_closed(clients["a1"], "a1"))
        mqtt = asyncio.create_task(mqtt_load(30))
        seen = _load_and_watch("b1", clients["b1"], clients["b2"], 150, kill_a)
        assert await asyncio.wait_for(seen, 2 * WAIT) == list(range(150))
        assert first.proc.returncode is not None
        assert await asyncio.wait_for(a_load, WAIT) > 0  # a1 was cut off by the kill
        await asyncio.wait_for(mqtt, 2 * WAIT)

        # B carries on: what is published now is all B's, each message handled once.
        after = [f"q{n}" for n in range(20)]
        await mosquitto_pub(broker, "work/after", "\n".join(after), lines=True)
        done_after = await handled(events, "work/after", len(after))
        assert sorted(done_after) == sorted((second.proc.pid, payload) for payload in after)
        # And its WebSockets still get group messages.
        await clients["b2"].send(json.dumps({"from": "b2", "n": -1}))
        assert await _next_from(clients["b1"], "b2") == {"from": "b2", "n": -1}

    done_before = await handled(events, "work/before", 0)
    counts = Counter(payload for _, payload in done_before)
    assert all(count == 1 for count in counts.values()), counts  # never twice
    # Both handled their share before the kill; B went on during and after it.
    assert {pid for pid, _ in done_before} == {first.proc.pid, second.proc.pid}
