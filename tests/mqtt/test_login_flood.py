"""A flood of wrong passwords on the embedded broker starves nothing else.

Password checks run on the hashing pool, never more than ``LOGINS["CONCURRENCY"]`` at once,
in turns shared fairly between addresses; the database thread stays free for other work; an
address past ``MAX_FAILURES`` is refused without a hash. Nothing here is timed: each test
checks an order or a count while the flood's checks still wait (each costs a real PBKDF2
hash, `costly_hashing`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

import pytest

from django_app.devices import touch
from django_app.models.devices import Device
from gateway import AsyncSmsConsumer
from gateway.db import database_sync_to_async
from gateway.passwords import hashing
from gateway.types import Receive, Scope, Send
from tests.mqtt.device_support import costly_hashing, fast_hashing, make_device
from tests.mqtt.embedded_support import WAIT, RunningBroker, running_broker
from tests.mqtt.raw_mqtt import Clients, RawClient
from tests.sms.support import inbound, running_gateway, twiml_messages

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
__all__ = ["costly_hashing", "fast_hashing"]  # the fixtures, imported for pytest

PASSWORD = "the-valid-device-password"
FLOOD = 40
FLOOD_HOST = "127.0.0.2"  # the flood's own loopback address; the valid device uses 127.0.0.1
ACCEPTED, SERVER_UNAVAILABLE, NOT_AUTHORIZED = 0, 3, 5


async def telemetry_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Telemetry as a consumer handles it: a database write per message."""
    if scope["type"] == "mqtt":
        await receive()
        await touch(scope["device_id"])


@pytest.fixture
async def clients() -> AsyncIterator[Clients]:
    pool = Clients()
    yield pool
    await pool.aclose()


@pytest.fixture
async def devices(transactional_db: None) -> None:
    await make_device("valid-1", PASSWORD)
    await make_device("victim-1", "a-password-nobody-guesses")


async def wrong_login(clients: Clients, port: int, n: int) -> int:
    client = await clients.open(port, local_host=FLOOD_HOST)
    username = "victim-1" if n % 2 else f"nobody-{n}"  # a device's, or no device's
    return (await client.connect(f"flood-{n}", username=username, password="guess")).return_code


async def until(condition: Callable[[], bool], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while not condition():
        assert loop.time() < deadline, what
        await asyncio.sleep(0.005)


async def valid_login(clients: Clients, run: RunningBroker) -> RawClient:
    client = await clients.open(run.port)
    connack = await client.connect("valid-1", username="valid-1", password=PASSWORD)
    assert connack.return_code == ACCEPTED
    return client


@pytest.mark.usefixtures("costly_hashing", "devices")
async def test_a_valid_device_and_its_telemetry_go_ahead_of_a_flood(clients: Clients) -> None:
    limits = {"CONCURRENCY": 2, "MAX_PER_ADDRESS": FLOOD, "MAX_FAILURES": FLOOD}
    async with running_broker(telemetry_app, LOGINS=limits) as run:
        gate = run.adapter.logins
        hashing.reset_peak()
        hashed = hashing.done
        flood = [asyncio.create_task(wrong_login(clients, run.port, n)) for n in range(FLOOD)]
        await until(lambda: gate.waiting >= FLOOD - 10, "the flood never queued")

        device = await valid_login(clients, run)
        assert gate.waiting > 0, "the valid device waited for the whole flood"
        await device.publish("devices/valid-1/telemetry", b'{"t": 21.5}', qos=1)
        assert gate.waiting > 0, "telemetry waited for the flood"
        assert await database_sync_to_async(Device.objects.count)() == 2
        assert gate.waiting > 0, "the database thread was busy with the flood"

        assert await asyncio.gather(*flood) == [NOT_AUTHORIZED] * FLOOD
        assert hashing.peak <= 2
        assert hashing.done - hashed == FLOOD + 1  # every hash on the pool, none elsewhere
        assert gate.checking == gate.waiting == 0


@pytest.mark.usefixtures("fast_hashing", "devices")
async def test_an_address_past_max_failures_is_refused_without_a_hash(
    clients: Clients, caplog: pytest.LogCaptureFixture
) -> None:
    async with running_broker(telemetry_app, LOGINS={"MAX_FAILURES": 3}) as run:
        for n in range(3):
            assert await wrong_login(clients, run.port, n) == NOT_AUTHORIZED
        hashed = hashing.done
        with caplog.at_level(logging.WARNING, "gateway.mqtt"):
            for n in range(3, 6):
                assert await wrong_login(clients, run.port, n) == NOT_AUTHORIZED
            right = await clients.open(run.port, local_host=FLOOD_HOST)
            connack = await right.connect("valid-1", username="valid-1", password=PASSWORD)
        assert connack.return_code == NOT_AUTHORIZED  # the address, not the password, is refused
        assert hashing.done == hashed
        assert run.adapter.logins.refused["limited"] == 4
        assert run.metrics.get("mqtt", "overloaded") == 0  # rejected, not overloaded
        assert "refused unchecked: 3 failed logins within 60s from 127.0.0.2" in caplog.text
        await valid_login(clients, run)  # another address counts on its own


@pytest.mark.usefixtures("costly_hashing", "devices")
async def test_logins_past_max_per_address_get_server_unavailable_unchecked(
    clients: Clients,
) -> None:
    limits = {"CONCURRENCY": 1, "MAX_PER_ADDRESS": 2}
    async with running_broker(telemetry_app, LOGINS=limits) as run:
        gate = run.adapter.logins
        held = [asyncio.create_task(wrong_login(clients, run.port, n)) for n in range(2)]
        await until(lambda: gate.checking + gate.waiting == 2, "the two logins never queued")
        assert await wrong_login(clients, run.port, 2) == SERVER_UNAVAILABLE
        assert gate.refused["busy"] == 1
        assert run.metrics.get("mqtt", "overloaded") == 1  # gateway_events_overloaded_total
        assert await asyncio.gather(*held) == [NOT_AUTHORIZED] * 2


@pytest.mark.usefixtures("costly_hashing", "devices")
async def test_clients_gone_while_their_login_waits_are_not_checked(clients: Clients) -> None:
    async with running_broker(telemetry_app, LOGINS={"CONCURRENCY": 1}) as run:
        gate = run.adapter.logins
        before = hashing.done
        waiting = [asyncio.create_task(wrong_login(clients, run.port, n)) for n in range(6)]
        await until(lambda: gate.waiting == 5, "the logins never queued")
        for client in clients.opened:
            client.abort()
        await asyncio.gather(*waiting, return_exceptions=True)
        await until(lambda: gate.checking == gate.waiting == 0, "the gate never emptied")
        assert hashing.done - before <= 2  # the check running when they left, at most one more


class Echo(AsyncSmsConsumer):
    """Replies to each SMS; the webhook keeps each message in the database first."""

    async def receive(self, body: str) -> None:
        await self.reply(f"echo: {body}")


@pytest.mark.usefixtures("costly_hashing", "devices")
async def test_an_sms_webhook_is_answered_while_a_flood_waits(clients: Clients) -> None:
    limits = {"CONCURRENCY": 2, "MAX_PER_ADDRESS": FLOOD, "MAX_FAILURES": FLOOD}
    async with (
        running_broker(telemetry_app, LOGINS=limits) as run,
        running_gateway(Echo.as_asgi(), {"STORE": None}) as sms,
    ):
        gate, hashed = run.adapter.logins, hashing.done
        flood = [asyncio.create_task(wrong_login(clients, run.port, n)) for n in range(FLOOD)]
        await until(lambda: gate.waiting >= FLOOD - 10, "the flood never queued")
        answer = await sms.post(inbound("+447700900123", "during the flood"))
        assert answer.status_code == 200
        assert twiml_messages(answer.text) == ["echo: during the flood"]
        assert gate.waiting > 0, "the webhook waited for the flood"
        assert await asyncio.gather(*flood) == [NOT_AUTHORIZED] * FLOOD
        assert hashing.done - hashed == FLOOD  # on the pool: the database thread hashed none
