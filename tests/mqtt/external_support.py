"""Helpers for the external-broker tests: a gateway in this loop, mosquitto_pub/sub, paho."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from gateway.conf import GatewaySettings
from gateway.pipeline import DeadLetter
from gateway.server import Gateway
from gateway.types import ASGIApp
from protocol_adapters.mqtt.external import ExternalBroker
from tests.integration.mosquitto import Mosquitto
from tests.server.process import GatewayProcess, gateway_env, spawn, wait_ready

WAIT = 20.0  # only turns a hang into a failure
BACKEND = "protocol_adapters.mqtt.ExternalBroker"
ROOT = Path(__file__).resolve().parents[2]


def broker_options(broker: Mosquitto, **options: Any) -> dict[str, Any]:
    """OPTIONS for an ExternalBroker on `broker`, with tiny backoffs for tests."""
    return {
        "URL": broker.url,
        "CLIENT_ID": f"test-{uuid.uuid4().hex[:8]}",
        "RECONNECT": {"INITIAL": 0.05, "MAX": 0.3},
        "RETRY": {"ATTEMPTS": 2, "INITIAL_BACKOFF": 0.01, "MAX_BACKOFF": 0.02},
        "CONNECT_TIMEOUT": 5.0,
        **options,
    }


def settings_for(
    broker: Mosquitto,
    dead_letter: Callable[[DeadLetter], Awaitable[None]] | None = None,
    **options: Any,
) -> GatewaySettings:
    gateway: dict[str, Any] = {
        "HTTP": {"PORT": 0},
        "SHUTDOWN_TIMEOUT": 3.0,
        "ADAPTERS": {"broker": {"BACKEND": BACKEND, "OPTIONS": broker_options(broker, **options)}},
    }
    if dead_letter is not None:
        gateway["DEAD_LETTER_HANDLER"] = dead_letter
    return GatewaySettings(gateway)


@asynccontextmanager
async def running_gateway(app: ASGIApp, settings: GatewaySettings) -> AsyncIterator[Gateway]:
    """`Gateway.serve()` in this loop, ready (connected and subscribed), stopped afterwards."""
    gateway = Gateway(app, settings=settings, port=0)
    ready = asyncio.Event()
    task = asyncio.create_task(gateway.serve(ready))
    waiter = asyncio.create_task(ready.wait())
    await asyncio.wait([task, waiter], timeout=WAIT, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    assert ready.is_set(), "the gateway did not get ready"
    try:
        yield gateway
    finally:
        if not gateway._stop.is_set():  # the test may have begun the stop itself
            gateway.stop()
        assert await asyncio.wait_for(task, WAIT) == 0


def adapter_of(gateway: Gateway) -> ExternalBroker:
    adapter = gateway._adapters[0].adapter
    assert isinstance(adapter, ExternalBroker)
    return adapter


async def mosquitto_pub(
    broker: Mosquitto,
    topic: str,
    payload: bytes | str,
    *args: str,
    qos: int = 1,
    lines: bool = False,
) -> None:
    """Publish stdin as one message (or one per line) with the real mosquitto_pub client."""
    data = payload.encode() if isinstance(payload, str) else payload
    proc = await asyncio.create_subprocess_exec(
        "mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "-t", topic,
        "-q", str(qos), "-l" if lines else "-s", *args,
        stdin=asyncio.subprocess.PIPE,
    )  # fmt: skip
    await proc.communicate(data)
    assert proc.returncode == 0


class Subscriber:
    """A running mosquitto_sub printing `topic payload` lines."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, broker: Mosquitto, topic: str, *args: str) -> Subscriber:
        proc = await asyncio.create_subprocess_exec(
            # stdbuf: mosquitto_sub's stdout is block-buffered when it is a pipe.
            "stdbuf", "-oL", "mosquitto_sub", "-h", "127.0.0.1", "-p", str(broker.port),
            "-t", topic, "-v", "-q", "1", "-d", *args,
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        self = cls(proc)
        try:
            # -d prints the SUBACK: from then on the subscription exists.
            while b"SUBACK" not in await self.line():
                pass
        except BaseException:
            await self.close()
            raise
        return self

    async def line(self) -> bytes:
        assert self.proc.stdout is not None
        return (await asyncio.wait_for(self.proc.stdout.readline(), WAIT)).rstrip(b"\n")

    async def message(self) -> bytes:
        """The next `topic payload` line, skipping -d's packet log."""
        while True:
            line = await self.line()
            if not line.startswith(b"Client ") and not line.startswith(b"Subscribed"):
                return line

    async def close(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()


async def eventually(check: Callable[[], bool], what: str) -> None:
    """Poll `check` until true; fail after WAIT seconds (a hang guard, not a timing test)."""
    for _ in range(int(WAIT / 0.02)):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def subprocess_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update(PYTHONUNBUFFERED="1", **extra)
    return env


APP = "tests.mqtt.external_app:application"


def start_gateway_process(
    directory: Path, broker: Mosquitto, events: Path, **env: str
) -> GatewayProcess:
    """`gateway run tests.mqtt.external_app:application` on `broker`, ready."""
    directory.mkdir(parents=True, exist_ok=True)
    environment = gateway_env(directory, settings="tests.mqtt.external_settings")
    environment.update(MQTT_TEST_URL=broker.url, MQTT_TEST_EVENTS=str(events), **env)
    command = [sys.executable, "-m", "gateway", "run", APP, "--port", "0"]
    process = spawn(directory, env=environment, command=command)
    assert wait_ready(process), process.stderr()
    return process


def read_events(events: Path) -> list[tuple[str, int, str, str]]:
    """(event, pid, topic, payload) for each line the test app wrote."""
    if not events.exists():
        return []
    rows = []
    # A line without its newline is still being written by the app: read it next time.
    *complete, _partial = events.read_text().split("\n")
    for line in complete:
        event, pid, topic_name, payload = line.split(" ", 3)
        rows.append((event, int(pid), topic_name, payload))
    return rows
