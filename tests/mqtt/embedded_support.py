"""Run the embedded broker on a free port, and drive real MQTT clients against it."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from gateway.adapters import AdapterContext, Listener
from gateway.metrics import MetricsRegistry
from gateway.pipeline import DeadLetter
from gateway.types import Message, Receive, Scope, Send
from protocol_adapters.mqtt.embedded import EmbeddedBroker
from tests.integration.support import not_installed

WAIT = 20.0  # generous: only there so a broken test fails instead of hanging


@dataclass
class RunningBroker:
    """An embedded broker started for a test, and what went to its dead letters."""

    adapter: EmbeddedBroker
    port: int
    metrics: MetricsRegistry
    listeners: list[Listener]
    dead_letters: list[DeadLetter] = field(default_factory=list)


@asynccontextmanager
async def running_broker(app: Any, **options: Any) -> AsyncIterator[RunningBroker]:
    """Start an EmbeddedBroker on 127.0.0.1 port 0 with `options`; stop it afterwards."""
    metrics = MetricsRegistry()
    letters: list[DeadLetter] = []

    async def dead_letter(letter: DeadLetter) -> None:
        letters.append(letter)

    context = AdapterContext(
        app=app,
        name="mqtt",
        options={"PORT": 0, "RETRY": {"ATTEMPTS": 2, "INITIAL_BACKOFF": 0.01}, **options},
        metrics=metrics,
        dead_letter=dead_letter,
    )
    assert EmbeddedBroker.check_options(context.options) == []
    adapter = EmbeddedBroker(context)
    listeners = await adapter.start()
    port = int(listeners[0].address.rsplit(":", 1)[1])
    try:
        yield RunningBroker(adapter, port, metrics, listeners, letters)
    finally:
        await adapter.stop(5.0)


class Recorder:
    """A tiny mqtt app: records every scope and payload it is called with."""

    def __init__(self) -> None:
        self.messages: asyncio.Queue[tuple[Scope, bytes]] = asyncio.Queue()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "mqtt":
            return  # no lifespan support: the gateway carries on without it
        event: Message = await receive()
        await self.messages.put((scope, event["payload"]))

    async def next(self) -> tuple[Scope, bytes]:
        return await asyncio.wait_for(self.messages.get(), WAIT)


def mosquitto(tool: str) -> str:
    """The path of mosquitto_pub / mosquitto_sub; skip (or fail under CI) without them."""
    found = shutil.which(tool)
    if found is None:
        not_installed(f"{tool} is not installed (apt-get install mosquitto-clients)")
    return found


async def mosquitto_pub(port: int, *args: str) -> tuple[int, str]:
    """Run mosquitto_pub against 127.0.0.1:port; return its exit code and stderr."""
    proc = await asyncio.create_subprocess_exec(
        mosquitto("mosquitto_pub"),
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
        *args,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), WAIT)
    assert proc.returncode is not None
    return proc.returncode, err.decode()


class MosquittoSub:
    """A running mosquitto_sub; `line()` returns the next "topic payload" it printed."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.granted = ""
        """The SUBACK return code(s) mosquitto_sub printed: "0", "1", "2" or "128"."""

    async def line(self) -> str:
        assert self.proc.stdout is not None
        raw = await asyncio.wait_for(self.proc.stdout.readline(), WAIT)
        return raw.decode().rstrip("\n")

    async def message(self) -> str:
        """The next message line, skipping the -d debug lines."""
        while True:
            line = await self.line()
            if not line.startswith("Client "):
                return line


@asynccontextmanager
async def mosquitto_sub(port: int, *args: str) -> AsyncIterator[MosquittoSub]:
    """mosquitto_sub -v, subscribed (SUBACK seen) before the block starts."""
    # Line-buffered: a pipe would otherwise hold the lines mosquitto_sub prints.
    line_buffered = ["stdbuf", "-oL"] if shutil.which("stdbuf") else []
    proc = await asyncio.create_subprocess_exec(
        *line_buffered,
        mosquitto("mosquitto_sub"),
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
        "-v",
        "-d",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    sub = MosquittoSub(proc)
    try:
        # With -d, mosquitto_sub prints its packets: wait for the SUBACK before going on.
        while not (line := await sub.line()).startswith("Subscribed (mid"):
            assert "refused" not in line.lower(), line
        sub.granted = line.rsplit(":", 1)[1].strip()
        yield sub
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()
