"""The production topology of deploy/local, started as it is documented, under load and faults.

nginx (TLS) in front of three `gateway run`, two `gateway worker`, Redis, Mosquitto with
dynamic security and PostgreSQL, all under supervisord (`deploy.local.topology.Topology`). A
device publishes QoS 1 readings through Mosquitto; every handling is a row in PostgreSQL, so
a message handled twice shows up twice. WebSocket clients follow the readings through nginx.
Then, under a steady load of readings, HTTP requests and signed SMS webhooks: (a) a gateway
is SIGKILLed, (b) the gateways are restarted one at a time with SIGTERM, (c) Redis is
restarted. The counts of each phase are printed (`-s` shows them) and in docs/deploy.md.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import smtplib
import ssl
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidHandshake, WebSocketException

from tests.integration.support import not_installed

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.topology]

WAIT = 60.0  # generous: only there to fail instead of hanging
RATE = 0.02  # seconds between readings (50 a second) under load


@pytest.fixture(scope="module")
def topology() -> Iterator[Any]:
    """The whole topology, started once for this module, in a directory of its own.

    Not under pytest's tmp_path: PostgreSQL runs as its own user under root, and must reach
    its directory (KEEP_TOPOLOGY=1 keeps it, with its logs, after the tests)."""
    try:
        import psycopg  # noqa: F401
        import supervisor  # noqa: F401
        import twilio  # noqa: F401

        from deploy.local.topology import MissingTool, Topology
    except ImportError as error:
        not_installed(f"{error.name} is not installed (pip install -e '.[all,dev]')")
    directory = Path(tempfile.mkdtemp(prefix="gateway-topology-"))
    print(f"topology in {directory}")
    topology = Topology(directory)
    try:
        topology.start()
    except MissingTool as error:
        not_installed(str(error))
    try:
        yield topology
    finally:
        topology.stop()
        if os.environ.get("KEEP_TOPOLOGY") != "1":
            shutil.rmtree(directory, ignore_errors=True)


def dsn(topology: Any) -> str:
    return f"host=127.0.0.1 port={topology.postgres_port} user=postgres dbname=gateway"


def handlings(topology: Any, kind: str, prefix: str) -> Counter[str]:
    """How many times each event of `kind` whose key starts with `prefix` was handled."""
    import psycopg

    with psycopg.connect(dsn(topology)) as db:
        rows = db.execute(
            "SELECT key, count(*) FROM topology_handling WHERE kind = %s AND key LIKE %s"
            " GROUP BY key",
            (kind, prefix + "%"),
        ).fetchall()
    return Counter(dict(rows))


def tls(topology: Any) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(topology.certificate))


class Device:
    """sensor-1, logged in to Mosquitto with its dynamic-security credential (paho, QoS 1)."""

    def __init__(self, topology: Any) -> None:
        import paho.mqtt.client as mqtt

        from deploy.local.topology import DEVICE_PASSWORD

        self.lock = threading.Lock()
        self.keys: dict[int, str] = {}
        self.acked_mids: set[int] = set()
        self.sent: list[str] = []
        connected = threading.Event()
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"sensor-1-{uuid.uuid4()}")
        client.username_pw_set("sensor-1", DEVICE_PASSWORD)
        client.on_connect = lambda *args: connected.set()
        client.on_publish = self._acked
        client.max_queued_messages_set(0)
        client.connect("127.0.0.1", topology.mqtt_port)
        client.loop_start()
        assert connected.wait(WAIT), "the device could not log in to Mosquitto"
        self.client = client

    def _acked(self, client: Any, userdata: Any, mid: int, *args: Any) -> None:
        with self.lock:
            self.acked_mids.add(mid)

    def publish(self, key: str, value: float) -> None:
        payload = json.dumps({"id": key, "value": value})
        info = self.client.publish("devices/sensor-1/readings", payload, qos=1)
        with self.lock:
            self.keys[info.mid] = key
            self.sent.append(key)

    def acked(self) -> set[str]:
        """The readings Mosquitto acknowledged (PUBACK): those that must not be lost."""
        with self.lock:
            return {self.keys[mid] for mid in self.acked_mids if mid in self.keys}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class Feed:
    """A WebSocket client of /ws/readings/ through nginx, reconnecting whenever it is cut off."""

    topology: Any
    connections: list[tuple[str, float]] = field(default_factory=list)  # (gateway, since)
    got: list[tuple[str, str, str, float]] = field(default_factory=list)  # held by, key, by, at

    async def run(self) -> None:
        url = f"wss://127.0.0.1:{self.topology.https_port}/ws/readings/"
        origin = f"https://127.0.0.1:{self.topology.https_port}"
        while True:
            try:
                async with connect(
                    url,
                    ssl=tls(self.topology),
                    origin=origin,
                    open_timeout=10,  # type: ignore[arg-type]
                ) as socket:
                    hello = json.loads(await socket.recv())
                    held_by = hello["process"]
                    self.connections.append((held_by, time.monotonic()))
                    async for raw in socket:
                        message = json.loads(raw)
                        if message["kind"] == "reading":
                            at = time.monotonic()
                            self.got.append((held_by, message["id"], message["handled_by"], at))
            except (OSError, TimeoutError, WebSocketException, InvalidHandshake):
                pass
            await asyncio.sleep(0.2)

    def held_by(self) -> str | None:
        return self.connections[-1][0] if self.connections else None


async def open_feeds(topology: Any, count: int) -> tuple[list[Feed], list[asyncio.Task[None]]]:
    feeds = [Feed(topology) for _ in range(count)]
    tasks = [asyncio.create_task(feed.run()) for feed in feeds]
    deadline = time.monotonic() + WAIT
    while not all(feed.connections for feed in feeds):
        assert time.monotonic() < deadline, "WebSocket clients could not connect through nginx"
        await asyncio.sleep(0.05)
    return feeds, tasks


def signed_sms(topology: Any, sid: str, body: str) -> tuple[str, dict[str, str], dict[str, str]]:
    """A Twilio inbound-SMS webhook request, signed for the URL nginx serves it on."""
    from twilio.request_validator import RequestValidator

    url = f"{topology.url}/sms/twilio/"
    params = {"MessageSid": sid, "From": "+447700900123", "To": "+15005550006", "Body": body}
    signature = RequestValidator(topology.twilio_auth_token).compute_signature(url, params)
    return url, params, {"X-Twilio-Signature": signature}


@dataclass
class Requests:
    """Outcomes of the HTTP and SMS requests of a load: answered right, or not (and why)."""

    ok: int = 0
    failed: list[str] = field(default_factory=list)


async def http_load(topology: Any, stats: Requests, sms: Requests, phase: str) -> None:
    """GET /api/ping/ every 20 ms and a signed SMS webhook every 100 ms, through nginx."""
    async with httpx.AsyncClient(verify=tls(topology), timeout=30) as client:
        n = 0
        while True:
            n += 1
            try:
                answer = await client.get(f"{topology.url}/api/ping/")
                if answer.status_code == 200 and answer.json()["secure"]:
                    stats.ok += 1
                else:
                    stats.failed.append(f"ping {answer.status_code} {answer.text[:200]}")
                if n % 5 == 0:
                    url, params, headers = signed_sms(topology, f"SM{phase}{n}", f"{phase} {n}")
                    answer = await client.post(url, data=params, headers=headers)
                    if answer.status_code == 200 and f"got: {phase} {n}" in answer.text:
                        sms.ok += 1
                    else:
                        sms.failed.append(f"sms {answer.status_code} {answer.text[:200]}")
            except httpx.HTTPError as error:
                stats.failed.append(f"{type(error).__name__}: {error}")
            await asyncio.sleep(RATE)


@dataclass
class Phase:
    """The counts of one load phase."""

    name: str
    sent: int = 0
    acked: int = 0
    handled: int = 0
    duplicated: int = 0
    lost: list[str] = field(default_factory=list)
    http: Requests = field(default_factory=Requests)
    sms: Requests = field(default_factory=Requests)
    fault_at: float = 0.0
    fault_done: float = 0.0

    def report(self) -> str:
        return (
            f"[{self.name}] readings: sent {self.sent}, acknowledged by Mosquitto {self.acked},"
            f" handled {self.handled}, duplicated {self.duplicated}, lost {len(self.lost)};"
            f" HTTP through nginx: {self.http.ok} ok, {len(self.http.failed)} failed;"
            f" SMS webhooks: {self.sms.ok} answered, {len(self.sms.failed)} failed;"
            f" fault took {self.fault_done - self.fault_at:.1f} s"
            + "".join(f"\n  failed: {failure}" for failure in self.http.failed + self.sms.failed)
        )


async def under_load(
    topology: Any, name: str, feeds: list[Feed], fault: Callable[[], Awaitable[None]]
) -> Phase:
    """Readings, HTTP and SMS load; `fault` after 2 s; 3 s more; then wait for every
    acknowledged reading to be handled (or WAIT) and count."""
    phase = Phase(name)
    adopted_before = set(adoptions(topology))
    prefix = f"{name}-{uuid.uuid4().hex[:6]}-"
    device = await asyncio.to_thread(Device, topology)
    http = asyncio.create_task(http_load(topology, phase.http, phase.sms, prefix))

    async def publish(stop: asyncio.Event) -> None:
        n = 0
        while not stop.is_set():
            device.publish(f"{prefix}{n}", n)
            n += 1
            await asyncio.sleep(RATE)

    stop = asyncio.Event()
    publisher = asyncio.create_task(publish(stop))
    try:
        await asyncio.sleep(2)
        phase.fault_at = time.monotonic()
        await fault()
        phase.fault_done = time.monotonic()
        await asyncio.sleep(3)
    finally:
        stop.set()
        await publisher
        http.cancel()
    await asyncio.sleep(1)  # the last PUBACKs
    acked = device.acked()
    deadline = time.monotonic() + WAIT
    while True:
        counts = await asyncio.to_thread(handlings, topology, "reading", prefix)
        if acked <= set(counts) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    await asyncio.sleep(1)  # room for a duplicate to show up
    counts = await asyncio.to_thread(handlings, topology, "reading", prefix)
    device.close()
    phase.sent, phase.acked = len(device.sent), len(acked)
    phase.handled = len(counts)
    phase.duplicated = sum(counts.values()) - len(counts)
    phase.lost = sorted(acked - set(counts))
    print(phase.report())
    print(*[f"  {line}" for line in adoptions(topology) if line not in adopted_before], sep="\n")
    return phase


def adoptions(topology: Any) -> list[str]:
    """The gateways' log lines saying a survivor adopted the session of a process gone."""
    return [
        line.strip()
        for gateway in topology.processes
        for line in (topology.logs / f"{gateway.name}.log").read_text().splitlines()
        if "adopted its session" in line
    ]


def logs_tail(topology: Any, *names: str) -> str:
    return "\n".join(
        f"--- {name}\n" + "\n".join((topology.logs / f"{name}.log").read_text().splitlines()[-30:])
        for name in names
    )


async def ready(topology: Any) -> None:
    """Every gateway ready again (health), before the next phase."""
    from deploy.local.topology import http_ok

    deadline = time.monotonic() + WAIT
    for gateway in topology.processes:
        while not await asyncio.to_thread(http_ok, gateway.health_url):
            assert time.monotonic() < deadline, logs_tail(topology, gateway.name)
            await asyncio.sleep(0.2)


async def test_each_reading_is_handled_once_and_reaches_feeds_held_by_other_gateways(
    topology: Any,
) -> None:
    feeds, tasks = await open_feeds(topology, 6)
    try:
        held = {feed.held_by() for feed in feeds}
        assert len(held) >= 2, held  # nginx spread the WebSockets over the gateways
        device = await asyncio.to_thread(Device, topology)
        prefix = f"once-{uuid.uuid4().hex[:6]}-"
        keys = [f"{prefix}{n}" for n in range(60)]
        for n, key in enumerate(keys):
            device.publish(key, n)
            await asyncio.sleep(0.01)
        deadline = time.monotonic() + WAIT
        while len(handlings(topology, "reading", prefix)) < len(keys):
            assert time.monotonic() < deadline, logs_tail(topology, "gateway-1")
            await asyncio.sleep(0.2)
        await asyncio.sleep(1)
        counts = handlings(topology, "reading", prefix)
        device.close()
        assert device.acked() == set(keys)
        assert counts == Counter(dict.fromkeys(keys, 1))  # each exactly once
        got = [entry for feed in feeds for entry in feed.got if entry[1].startswith(prefix)]
        by = Counter(handled_by for key, handled_by in {(e[1], e[2]) for e in got})
        assert len(by) >= 2, by  # the $share group split them over the gateways
        for key in keys:  # each reached a WebSocket held by another gateway than its handler
            assert any(held_by != handled_by for held_by, k, handled_by, _ in got if k == key)
        print(f"[steady] readings: sent {len(keys)}, handled {len(counts)}, by gateway {dict(by)}")
    finally:
        for task in tasks:
            task.cancel()


async def test_a_signed_sms_webhook_through_nginx_is_answered(topology: Any) -> None:
    url, params, headers = signed_sms(topology, f"SM{uuid.uuid4().hex}", "hello there")
    async with httpx.AsyncClient(verify=tls(topology)) as client:
        answer = await client.post(url, data=params, headers=headers)
        assert answer.status_code == 200, answer.text
        assert "got: hello there</Message>" in answer.text
        # A retry (the same MessageSid), which nginx sends to the next gateways in turn: each
        # is answered empty and none reaches a consumer again (docs/sms.md: the dedup holds
        # across processes with the database store).
        again = [await client.post(url, data=params, headers=headers) for _ in range(3)]
        assert [retry.status_code for retry in again] == [200] * 3
        assert [retry.text for retry in again if "<Message>" in retry.text] == []
        forged = await client.post(url, data=params, headers={"X-Twilio-Signature": "forged"})
        assert forged.status_code == 403


def test_an_inbound_mail_is_accepted_and_handled_by_a_worker(topology: Any) -> None:
    # nginx proxies HTTP only here (Debian's nginx has no stream module by default): SMTP
    # goes straight to a gateway's own port.
    message = EmailMessage()
    message_id = f"{uuid.uuid4().hex}@sender.example"
    message["From"], message["To"] = "someone@sender.example", "ops@topology.example"
    message["Subject"], message["Message-ID"] = "pump 3 is leaking", f"<{message_id}>"
    message.set_content("Please send someone.")
    for gateway in topology.processes:
        with (
            smtplib.SMTP("127.0.0.1", gateway.smtp_port, timeout=WAIT) as smtp,
            pytest.raises(smtplib.SMTPRecipientsRefused),  # unrouted: 550 at RCPT
        ):
            smtp.sendmail("someone@sender.example", ["nobody@topology.example"], "x")
    with smtplib.SMTP("127.0.0.1", topology.processes[0].smtp_port, timeout=WAIT) as smtp:
        assert smtp.send_message(message) == {}  # 250: accepted by every recipient
    deadline = time.monotonic() + WAIT
    while not (counts := handlings(topology, "mail", message_id)):
        assert time.monotonic() < deadline, logs_tail(topology, "worker-1", "worker-2")
        time.sleep(0.2)
    assert counts == Counter({message_id: 1})


@pytest.mark.timeout(300)
async def test_a_gateway_killed_under_load_loses_nothing_and_feeds_come_back(
    topology: Any,
) -> None:
    await ready(topology)
    feeds, tasks = await open_feeds(topology, 3)
    victim = feeds[0].held_by()
    assert victim is not None
    cut_off = [feed for feed in feeds if feed.held_by() == victim]
    old_pid = topology.pid(victim)

    async def kill() -> None:
        await asyncio.to_thread(topology.ctl, "signal", "KILL", victim)  # supervisord restarts it

    try:
        phase = await under_load(topology, "kill", feeds, kill)
    finally:
        for task in tasks:
            task.cancel()
    assert phase.lost == [], (phase.report(), logs_tail(topology, "gateway-1", "gateway-2"))
    assert topology.pid(victim) not in (0, old_pid)
    for feed in cut_off:  # reconnected through nginx, and received again
        again = [since for held_by, since in feed.connections if since > phase.fault_at]
        assert again, feed.connections
        assert [key for _, key, _, at in feed.got if at > again[0]], feed.connections
    await ready(topology)


@pytest.mark.timeout(300)
async def test_a_rolling_restart_fails_no_request_and_loses_nothing(topology: Any) -> None:
    await ready(topology)
    feeds, tasks = await open_feeds(topology, 3)

    async def rolling_restart() -> None:
        for gateway in topology.processes:
            await asyncio.to_thread(topology.ctl, "restart", gateway.name)  # SIGTERM, drained
            await ready(topology)

    try:
        phase = await under_load(topology, "rolling", feeds, rolling_restart)
    finally:
        for task in tasks:
            task.cancel()
    assert phase.lost == [], phase.report()
    assert phase.http.failed == [], phase.report()
    assert phase.sms.failed == [], phase.report()
    for feed in feeds:  # back, and receiving, after the last restart
        assert [key for _, key, _, at in feed.got if at > phase.fault_done], feed.connections


@pytest.mark.timeout(300)
async def test_a_redis_restart_under_load_every_process_carries_on(topology: Any) -> None:
    await ready(topology)
    names = [gateway.name for gateway in topology.processes] + topology.worker_names
    pids = {name: topology.pid(name) for name in names}
    feeds, tasks = await open_feeds(topology, 3)

    async def restart_redis() -> None:
        await asyncio.to_thread(topology.ctl, "restart", "redis")  # back empty (no persistence)

    try:
        phase = await under_load(topology, "redis", feeds, restart_redis)
    finally:
        for task in tasks:
            task.cancel()
    assert phase.lost == [], phase.report()
    assert {name: topology.pid(name) for name in names} == pids  # nobody died or restarted
    for feed in feeds:  # groups reach their members again (readings published after it)
        assert [key for _, key, _, at in feed.got if at > phase.fault_done + 1], feed.connections
    await ready(topology)
