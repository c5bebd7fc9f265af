"""A flood on one intake leaves the others answering; the flooded one refuses past its cap.

One gateway serves every intake at once: the embedded MQTT broker (device logins), the
Twilio SMS webhook and the Mailgun inbound-mail webhook (both storing to the database), SMTP
and the application's HTTP view. Each test floods one intake for a few seconds with real
clients while probing every other intake one exchange at a time, then checks behaviour, not
times: every probe was answered with success; the flooded intake answered each exchange with
success or its "busy, retry" answer (503 with Retry-After, SMTP 421, CONNACK 3; wrong MQTT
passwords CONNACK 5), never an error or a hang, and refused some as busy past its cap (counted
in ``overloaded``); every SMS or mail that was answered with success reached the
application. An SMS flood keeps at most ``INTAKE["CONCURRENCY"]`` store calls queued for the
database thread the stores share; the same flood without the cap queues one per client.
The latency figures (against idle) are in benchmarks/intake_flood.py.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import pytest
from asgiref.sync import SyncToAsync

from benchmarks.intake_clients import (
    MAIL_SIGNING_KEY,
    SMS_TOKEN,
    Exchange,
    Intakes,
    http_get,
    mail_webhook,
    mqtt_login,
    sms_webhook,
    smtp_mail,
)
from gateway import AsyncEmailConsumer, AsyncSmsConsumer
from gateway.conf import GatewaySettings
from gateway.metrics import registry
from gateway.server import Gateway
from gateway.types import Receive, Scope, Send
from routers import EmailToRouter, ProtocolTypeRouter, SMSFromRouter, address
from tests.mqtt.device_support import fast_hashing, make_device

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
__all__ = ["fast_hashing"]  # the fixture, imported for pytest

FLOOD_SECONDS = 2.5
FLOODERS = 30
FLOOD_HOST = "127.0.0.2"  # the MQTT flood's own address: its failures count apart
PASSWORD = "the-valid-device-password"
CAP = {"CONCURRENCY": 1, "MAX_WAITING": 4, "WAIT": 0.5, "RETRY_AFTER": 3}
WAIT = 30.0


@dataclass
class Seen:
    """What reached the application: SMS MessageSids and mail Message-IDs."""

    sms: set[str] = field(default_factory=set)
    mail: set[str] = field(default_factory=set)


def make_app(seen: Seen) -> Any:
    class Texts(AsyncSmsConsumer):
        async def receive(self, body: str) -> None:
            seen.sms.add(self.scope["message_id"])

    class Mail(AsyncEmailConsumer):
        async def receive(self, message: EmailMessage) -> None:
            seen.mail.add(f"<{self.scope['message_id']}>")

    async def ping(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"pong"})

    async def telemetry(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()

    return ProtocolTypeRouter(
        {
            "http": ping,
            "mqtt": telemetry,
            "sms": SMSFromRouter([], default=Texts.as_asgi()),
            "email": EmailToRouter([address(r"support@example\.com", Mail.as_asgi())]),
        }
    )


def settings(sms_cap: dict[str, Any], logins: dict[str, Any] | None = None) -> GatewaySettings:
    adapters = {
        "mqtt": ("protocol_adapters.mqtt.EmbeddedBroker", {"PORT": 0, "LOGINS": logins}),
        "sms": ("protocol_adapters.twilio_sms.TwilioSmsAdapter",
                {"AUTH_TOKEN": SMS_TOKEN, "INTAKE": sms_cap}),
        "mail": ("protocol_adapters.email_webhooks.EmailWebhookAdapter",
                 {"PROVIDER": "mailgun", "SIGNING_KEY": MAIL_SIGNING_KEY, "STORE": True,
                  "INTAKE": CAP, "MAX_IN_FLIGHT": 4}),
        "smtp": ("protocol_adapters.smtp.SMTPAdapter", {"PORT": 0, "MAX_CONNECTIONS": 8}),
    }  # fmt: skip
    return GatewaySettings(
        {
            "HTTP": {"PORT": 0},
            "SHUTDOWN_TIMEOUT": 5,
            "LOOP": "asyncio",
            "ADAPTERS": {
                name: {"BACKEND": backend, "OPTIONS": options}
                for name, (backend, options) in adapters.items()
            },
        }
    )


@asynccontextmanager
async def running(
    seen: Seen, sms_cap: dict[str, Any] = CAP, logins: dict[str, Any] | None = None
) -> AsyncIterator[Intakes]:
    app, options = make_app(seen), settings(sms_cap, logins)
    gateway = Gateway(app, settings=options, host="127.0.0.1", port=0)
    ready = asyncio.Event()
    serving = asyncio.create_task(gateway.serve(ready))
    waiter = asyncio.create_task(ready.wait())
    await asyncio.wait([serving, waiter], timeout=WAIT, return_when="FIRST_COMPLETED")
    waiter.cancel()
    assert ready.is_set(), f"the gateway did not start: {serving}"
    ports = {item.protocol: int(item.address.rsplit(":", 1)[1].rstrip("/")) for item in
             gateway.listeners if item.protocol in ("http", "mqtt", "smtp")}  # fmt: skip
    try:
        yield Intakes(ports["http"], ports["mqtt"], ports["smtp"])
    finally:
        gateway.stop()
        assert await asyncio.wait_for(serving, WAIT) == 0


Client = Callable[[Intakes], Awaitable[Exchange]]

PROBES: dict[str, Client] = {
    "mqtt": lambda at: mqtt_login(at.mqtt, "valid-1", PASSWORD),
    "sms": lambda at: sms_webhook(at.http),
    "mail": lambda at: mail_webhook(at.http),
    "smtp": lambda at: smtp_mail(at.smtp),
    "http": lambda at: http_get(at.http),
}
FLOODS: dict[str, Client] = {
    **PROBES,
    "mqtt": lambda at: mqtt_login(at.mqtt, "valid-1", "a guess", FLOOD_HOST),
}
PROTOCOL = {"sms": "sms", "mail": "email", "smtp": "email"}


async def flood(client: Client, at: Intakes) -> list[Exchange]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + FLOOD_SECONDS
    done: list[Exchange] = []

    async def worker() -> None:
        while loop.time() < deadline:
            done.append(await client(at))

    await asyncio.gather(*(worker() for _ in range(FLOODERS)))
    return done


async def probe(others: list[str], at: Intakes, flooding: asyncio.Task[Any]) -> list[Exchange]:
    """Each other intake in turn, one exchange at a time, until the flood ends."""
    await asyncio.sleep(0.3)  # the flood is on
    done: list[tuple[str, Exchange]] = []
    while not flooding.done() or len(done) < len(others):
        for name in others:
            done.append((name, await PROBES[name](at)))
    assert {name for name, _ in done} == set(others)
    return [exchange for _, exchange in done]


async def eventually(check: Callable[[], bool], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while not check():
        assert loop.time() < deadline, what
        await asyncio.sleep(0.05)


class DatabaseThreadQueue:
    """The deepest queue of calls waiting for the database thread the stores share."""

    def __init__(self) -> None:
        self.deepest = 0

    async def watch(self, until: asyncio.Task[Any]) -> None:
        queue = SyncToAsync.single_thread_executor._work_queue
        while not until.done():
            self.deepest = max(self.deepest, queue.qsize())
            await asyncio.sleep(0.001)


@pytest.mark.parametrize("intake", ["capped", "open"])
async def test_an_sms_flood_queues_at_most_its_cap_on_the_database_thread(intake: str) -> None:
    """The SMS store's records wait for the shared thread CONCURRENCY at a time, the rest of
    the flood waits (or is refused) in the gate; without the cap it all queues there."""
    seen = Seen()
    cap = CAP if intake == "capped" else {"CONCURRENCY": 10**6, "MAX_WAITING": 10**6}
    async with running(seen, cap) as at:
        flooding = asyncio.create_task(flood(FLOODS["sms"], at))
        depth = DatabaseThreadQueue()
        await depth.watch(flooding)
        floods = await flooding
    print(f"{intake}: {len(floods)} requests, {depth.deepest} calls queued at most")
    if intake == "capped":
        assert depth.deepest <= CAP["CONCURRENCY"]
    else:  # the reference: the same flood without the cap queues past it
        assert depth.deepest > CAP["CONCURRENCY"]


@pytest.mark.usefixtures("fast_hashing")
@pytest.mark.parametrize("flooded", list(FLOODS))
async def test_a_flood_on_one_intake_starves_no_other(flooded: str) -> None:
    await make_device("valid-1", PASSWORD)
    seen = Seen()
    registry.reset()
    async with running(seen) as at:
        flooding = asyncio.create_task(flood(FLOODS[flooded], at))
        others = [name for name in PROBES if name != flooded]
        probes = await probe(others, at, flooding)
        floods = await flooding

        outcomes = Counter(exchange.outcome for exchange in floods)
        print(f"{flooded} flood: {dict(outcomes)}; {len(probes)} probes of the others")
        failed = [p for p in probes if p.outcome != "ok"]
        assert not failed, f"other intakes failed during the {flooded} flood: {failed[:3]}"
        allowed = {"refused", "busy"} if flooded == "mqtt" else {"ok", "busy"}
        assert set(outcomes) <= allowed, [e for e in floods if e.outcome not in allowed][:3]
        if flooded in PROTOCOL:
            assert outcomes["busy"] > 0, f"the {flooded} flood was never refused: {outcomes}"
            assert registry.get(PROTOCOL[flooded], "overloaded") == outcomes["busy"]
        # Nothing accepted is lost: every SMS and mail answered with success was handled.
        accepted = [e.sent_id for e in (*floods, *probes) if e.outcome == "ok" and e.sent_id]
        await eventually(
            lambda: set(accepted) <= seen.sms | seen.mail, "an accepted message was lost"
        )


@pytest.mark.parametrize("delay", [0.5, 0])
async def test_a_busy_answer_waits_busy_delay(delay: float) -> None:
    """Past the cap the 503 comes BUSY_DELAY seconds later: a client asking again as soon as
    it is answered asks once per BUSY_DELAY, not as fast as the loop can refuse it."""
    seen = Seen()
    # Room for every flooder to wait, each at most 0.02 s: every refusal is a wait run out.
    cap = {**CAP, "MAX_WAITING": FLOODERS, "WAIT": 0.02, "BUSY_DELAY": delay}
    async with running(seen, cap) as at:
        floods = await flood(FLOODS["sms"], at)
    busy = [exchange.seconds for exchange in floods if exchange.outcome == "busy"]
    assert busy, "the flood was never refused"
    if delay:
        assert min(busy) >= 0.02 + delay, sorted(busy)[:5]
    else:
        assert min(busy) < 0.5, sorted(busy)[:5]


@pytest.mark.usefixtures("fast_hashing")
@pytest.mark.parametrize("delay", [0.5, 0])
async def test_a_busy_connack_waits_busy_delay(delay: float) -> None:
    """A login past LOGINS' caps gets CONNACK 3 BUSY_DELAY seconds later."""
    await make_device("valid-1", PASSWORD)
    seen = Seen()
    logins = {"CONCURRENCY": 1, "MAX_PER_ADDRESS": 2, "BUSY_DELAY": delay}
    async with running(seen, logins=logins) as at:
        floods = await flood(FLOODS["mqtt"], at)
    busy = [exchange.seconds for exchange in floods if exchange.outcome == "busy"]
    assert busy, "the flood was never refused as busy"
    if delay:
        assert min(busy) >= delay, sorted(busy)[:5]
    else:
        assert min(busy) < 0.5, sorted(busy)[:5]
