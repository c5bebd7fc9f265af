"""Two gateways with persistent sessions on one `$share` group; one is SIGKILLed mid-burst and
never comes back: the survivor adopts its session, and nothing the broker accepted is lost."""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.e2e.test_cluster import broker, redis_env
from tests.integration.mosquitto import Mosquitto
from tests.integration.redis import RedisServer, own_redis_server
from tests.mqtt.external_support import read_events
from tests.server.process import GatewayProcess, gateway_env, spawn, wait_ready

__all__ = ["broker", "own_redis_server"]

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

APP = "tests.mqtt.external_app:application"
MESSAGES = 2_000
KILL_AFTER = 400  # handled messages, of both processes, before one is killed
WAIT = 60.0


def start(directory: Path, client_id: str, env: dict[str, str]) -> GatewayProcess:
    directory.mkdir()
    environment = gateway_env(directory, settings="tests.e2e.failover_settings") | env
    command = [sys.executable, "-m", "gateway", "run", APP, "--port", "0"]
    process = spawn(
        directory, "--set", f"broker.CLIENT_ID={client_id}", env=environment, command=command
    )
    assert wait_ready(process), process.stderr()
    return process


def done(events: Path) -> list[str]:
    return [payload for event, _, _, payload in read_events(events) if event == "done"]


async def burst(broker: Mosquitto) -> None:
    """2,000 QoS 1 messages from one mosquitto_pub, each acknowledged by the broker."""
    proc = await asyncio.create_subprocess_exec(
        "mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "-t", "work/burst",
        "-q", "1", "-l", stdin=asyncio.subprocess.PIPE,
    )  # fmt: skip
    await proc.communicate("".join(f"m{n}\n" for n in range(MESSAGES)).encode())
    assert proc.returncode == 0  # every PUBLISH was acknowledged (PUBACK) by Mosquitto


async def burst_and_kill(
    broker: Mosquitto, victim: GatewayProcess, events: Path, redis: RedisServer | None
) -> float:
    publishing = asyncio.create_task(burst(broker))
    while len(done(events)) < KILL_AFTER:
        await asyncio.sleep(0.005)
    victim.proc.kill()  # SIGKILL, mid-burst, never restarted
    killed = time.monotonic()
    assert len(set(done(events))) < MESSAGES, "the burst was over before the kill"
    if redis is not None:  # and Redis restarts empty before the victim's heartbeat expired
        await asyncio.to_thread(redis.restart)
    await publishing
    return killed


@pytest.mark.parametrize("redis_restart", [False, True], ids=["kill", "kill-and-redis-restart"])
def test_a_killed_gateway_loses_nothing_without_coming_back(
    own_redis_server: RedisServer, broker: Mosquitto, tmp_path: Path, redis_restart: bool
) -> None:
    events = tmp_path / "events.log"
    env = {"MQTT_TEST_URL": broker.url, "MQTT_TEST_EVENTS": str(events)}
    env |= redis_env(own_redis_server)
    env["MQTT_TEST_DELAY"] = "0.001"  # one topic, in order: the burst takes a second or more
    survivor = start(tmp_path / "a", "gw-a", env)
    try:
        victim = start(tmp_path / "b", "gw-b", env)
        try:
            restart = own_redis_server if redis_restart else None
            killed = asyncio.run(burst_and_kill(broker, victim, events, restart))
            deadline = time.monotonic() + WAIT
            while len(set(done(events))) < MESSAGES and time.monotonic() < deadline:
                time.sleep(0.05)
            recovered = time.monotonic() - killed
            time.sleep(1.0)  # room for duplicates to show up
        finally:
            victim.kill()
    finally:
        survivor.kill()
    handled = Counter(done(events))
    lost = MESSAGES - len(handled)
    duplicates = sum(handled.values()) - len(handled)
    by_process = Counter(pid for event, pid, _, _ in read_events(events) if event == "done")
    print(
        f"sent {MESSAGES}, handled {len(handled)}, lost {lost}, duplicates {duplicates};"
        f" all handled {recovered:.2f}s after the kill; by process {dict(by_process)}"
    )
    assert set(handled) <= {f"m{n}" for n in range(MESSAGES)}
    assert len(handled) + lost == MESSAGES
    assert lost == 0, survivor.stderr()[-3000:]
    adoption = [line for line in survivor.stderr().splitlines() if "adopted its session" in line]
    print(*adoption, sep="\n")
    assert adoption, survivor.stderr()[-3000:]
    assert victim.proc.pid in by_process  # the victim did handle part of the burst
