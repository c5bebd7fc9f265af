"""``gateway simulate``: real MQTT devices publishing telemetry, to try a gateway under load.

Each simulated device is its own MQTT client (gmqtt, MQTT 3.1.1): it logs in with its device
id as username, publishes JSON telemetry to ``devices/<id>/telemetry``, announces itself on
``devices/<id>/status`` (with a will saying "offline") and listens on
``devices/<id>/commands/#``; the last command it got rides along in its next readings. A
command sent with `gateway.mqtt.request` (over MQTT 3.1.1 its topic ends with the request's
id: ``devices/<id>/commands/<command>/<request id>``) is answered on
``devices/<id>/responses/<request id>`` with ``{"device", "command", "ok"}``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import random
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

__all__ = ["SimulatedDevice", "Simulation", "reading", "register"]

logger = logging.getLogger("gateway.simulate")
CONNECT_TIMEOUT = 10.0
"""Seconds a device waits for its CONNACK."""


def reading(index: int, last_command: Any = None) -> dict[str, Any]:
    """One plausible reading of device number `index`: temperature, battery, time."""
    now = time.time()
    data: dict[str, Any] = {
        "temperature": round(20 + 3 * math.sin(now / 30 + index) + random.uniform(-0.2, 0.2), 2),
        "battery": max(0, 100 - int(now / 60 + 7 * index) % 100),
        "at": round(now, 3),
    }
    if last_command is not None:
        data["last_command"] = last_command
    return data


@dataclass
class SimulatedDevice:
    """One device: its MQTT client and what it has received."""

    device_id: str
    index: int
    client: Any = None
    commands: int = 0
    last_command: Any = None

    @property
    def topic(self) -> str:
        return f"devices/{self.device_id}"

    def on_message(self, client: Any, topic: str, payload: bytes, qos: int, props: Any) -> int:
        self.commands += 1
        try:
            self.last_command = json.loads(payload)
        except ValueError:
            self.last_command = payload.decode("utf-8", "replace")
        levels = topic.split("/")[3:]  # after devices/<id>/commands: <command>/<request id>
        if len(levels) >= 2:
            answer = {"device": self.device_id, "command": "/".join(levels[:-1]), "ok": True}
            client.publish(f"{self.topic}/responses/{levels[-1]}", json.dumps(answer), qos=1)
        return 0  # PUBACK: accepted


@dataclass
class Simulation:
    """N devices publishing `rate` messages per second in total to the broker at `url`."""

    url: str
    devices: int = 3
    rate: float = 1.0
    password: str | None = None
    prefix: str = "sensor"
    qos: int = 0
    connect_timeout: float = CONNECT_TIMEOUT
    sent: int = 0
    members: list[SimulatedDevice] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def commands(self) -> int:
        """Commands received by all devices."""
        return sum(member.commands for member in self.members)

    def device_ids(self) -> list[str]:
        return [f"{self.prefix}-{n}" for n in range(1, self.devices + 1)]

    async def connect(self) -> None:
        """Connect every device; raises ConnectionError naming the first one refused."""
        host, port = _host_port(self.url)
        for index, device_id in enumerate(self.device_ids(), start=1):
            member = SimulatedDevice(device_id, index)
            member.client = await self._client(member, host, port)
            self.members.append(member)

    async def _client(self, member: SimulatedDevice, host: str, port: int) -> Any:
        gmqtt, mqtt311 = _gmqtt()
        will = gmqtt.Message(f"{member.topic}/status", b"offline", qos=1)
        client = gmqtt.Client(member.device_id, will_message=will)
        client.set_config({"reconnect_retries": 0})
        if self.password is not None:
            client.set_auth_credentials(member.device_id, self.password)
        client.on_message = member.on_message
        try:
            await _connect(client, host, port, mqtt311, self.connect_timeout)
        except Exception as exc:
            connected = f"{len(self.members)} of {self.devices} devices connected"
            message = f"{member.device_id} could not connect to {self.url}: {exc} ({connected})"
            raise ConnectionError(message) from exc
        client.subscribe(f"{member.topic}/commands/#", qos=1)
        client.publish(f"{member.topic}/status", b"online", qos=1)
        return client

    async def run(self, duration: float | None = None) -> None:
        """Publish at `rate` until `stop()` or `duration` seconds have passed."""
        interval = 1.0 / self.rate
        loop = asyncio.get_running_loop()
        started = next_at = loop.time()
        while not self._stop.is_set():
            if duration is not None and loop.time() - started >= duration:
                break
            member = self.members[self.sent % len(self.members)]
            payload = json.dumps(reading(member.index, member.last_command)).encode()
            member.client.publish(f"{member.topic}/telemetry", payload, qos=self.qos)
            self.sent += 1
            next_at += interval
            delay = next_at - loop.time()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)
            elif self.sent % 100 == 0:
                await asyncio.sleep(0)  # behind schedule: catch up, but let the loop breathe

    def stop(self) -> None:
        """End `run()` soon."""
        self._stop.set()

    async def close(self) -> None:
        """Disconnect every device cleanly (no will)."""
        for member in self.members:
            member.client.on_disconnect = _quiet  # our own DISCONNECT: nothing to report
            with contextlib.suppress(Exception):
                await member.client.disconnect()
        self.members.clear()


async def _connect(client: Any, host: str, port: int, version: int, timeout: float) -> None:
    """Connect, or raise saying why: the CONNACK's refusal, a closed connection, no answer.

    gmqtt waits for the CONNACK forever when the broker closes the connection first (as a
    broker over a connection cap does), so the close and a timeout end the wait here.
    """
    from gmqtt import MQTTConnectError

    closed = asyncio.Event()
    client.on_disconnect = lambda *args, **kwargs: closed.set()
    connecting = asyncio.ensure_future(client.connect(host, port, keepalive=30, version=version))
    close_seen = asyncio.ensure_future(closed.wait())
    try:
        await asyncio.wait([connecting, close_seen], timeout=timeout, return_when="FIRST_COMPLETED")
        if closed.is_set() and not connecting.done():
            # A refusing CONNACK may come just before the close: its reason says more.
            await asyncio.wait([connecting], timeout=0.5)
        if connecting.done():
            try:
                connecting.result()
            except MQTTConnectError as exc:
                raise ConnectionError(f"refused by the broker: CONNACK {exc}") from exc
            return
        if closed.is_set():
            raise ConnectionError(
                "the broker closed the connection before its CONNACK "
                "(a connection limit such as MAX_CONNECTIONS_PER_ADDRESS, or not an MQTT broker?)"
            )
        raise TimeoutError(f"no CONNACK within {timeout:g}s")
    finally:
        for task in (connecting, close_seen):
            task.cancel()
        await asyncio.gather(connecting, close_seen, return_exceptions=True)
        client.on_disconnect = _disconnected


def _disconnected(client: Any, packet: Any = None, exc: Any = None) -> None:
    logger.warning("%s was disconnected by the broker", getattr(client, "_client_id", "a device"))


def _quiet(*args: Any, **kwargs: Any) -> None:
    return None


def _gmqtt() -> tuple[Any, int]:
    """gmqtt and its MQTT 3.1.1 constant, or ImportError naming the extra to install."""
    try:
        import gmqtt
        from gmqtt.mqtt.constants import MQTTv311
    except ImportError:
        raise ImportError(
            "gateway simulate needs gmqtt: pip install 'django-protocol-gateway[mqtt]'"
        ) from None
    return gmqtt, int(MQTTv311)


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url if "://" in url else f"mqtt://{url}")
    if parts.scheme != "mqtt" or not parts.hostname:
        raise ValueError(f"--broker must look like mqtt://HOST:PORT, got {url!r}")
    return parts.hostname, parts.port or 1883


# --- the command -------------------------------------------------------------------------------


def register(commands: Any) -> None:
    """Add ``gateway simulate`` to the ``gateway`` command."""
    from gateway.cli import add_common_options

    parser = commands.add_parser("simulate", help="run simulated MQTT devices against a broker")
    parser.add_argument("--devices", type=int, default=3, help="how many devices (default: 3)")
    parser.add_argument(
        "--rate", type=float, default=1.0, help="messages per second, all devices (default: 1)"
    )
    parser.add_argument(
        "--broker", default="mqtt://127.0.0.1:1883", help="mqtt://HOST:PORT (default: local)"
    )
    parser.add_argument("--password", help="every device's password (default: none)")
    parser.add_argument("--prefix", default="sensor", help="device ids are PREFIX-1..N")
    parser.add_argument("--qos", type=int, choices=(0, 1), default=0, help="telemetry QoS")
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.add_argument(
        "--connect-timeout",
        type=float,
        default=CONNECT_TIMEOUT,
        help=f"seconds to wait for each CONNACK (default: {CONNECT_TIMEOUT:g})",
    )
    add_common_options(parser)
    parser.set_defaults(handler=_simulate_command, needs_django=False)


def _simulate_command(args: argparse.Namespace) -> int:
    from gateway.cli import UsageError

    if args.devices < 1 or args.rate <= 0 or args.connect_timeout <= 0:
        raise UsageError("--devices must be at least 1, --rate and --connect-timeout above 0")
    try:
        _host_port(args.broker)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    simulation = Simulation(
        args.broker, args.devices, args.rate, args.password, args.prefix, args.qos,
        args.connect_timeout,
    )  # fmt: skip
    try:
        return asyncio.run(_simulate(simulation, args.duration))
    except KeyboardInterrupt:
        return 0


async def _simulate(simulation: Simulation, duration: float | None) -> int:
    logging.getLogger("gmqtt").setLevel(logging.WARNING)  # one line per connection otherwise
    try:
        await simulation.connect()
    except ConnectionError as exc:
        sys.stderr.write(f"gateway simulate: {exc}\n")
        await simulation.close()
        return 1
    progress = asyncio.create_task(_progress(simulation, sys.stderr.write))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, simulation.stop)
    try:
        await simulation.run(duration)
    finally:
        progress.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await progress
        summary = f"\ngateway simulate: sent {simulation.sent}, commands {simulation.commands}\n"
        await simulation.close()
    sys.stderr.write(summary)
    return 0


async def _progress(simulation: Simulation, write: Callable[[str], Any]) -> None:
    """One line, rewritten every second: rate, total, commands received."""
    loop = asyncio.get_running_loop()
    last_sent, last_at = simulation.sent, loop.time()
    while True:
        await asyncio.sleep(1.0)
        now = loop.time()
        per_second = (simulation.sent - last_sent) / (now - last_at)
        last_sent, last_at = simulation.sent, now
        write(
            f"\r{len(simulation.members)} devices  {per_second:8.1f} sent/s  "
            f"{simulation.sent:9d} sent  {simulation.commands:6d} commands received"
        )
