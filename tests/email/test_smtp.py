"""The SMTP adapter against real SMTP clients (smtplib, swaks) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import smtplib
import time
from email.message import EmailMessage
from typing import Any

import pytest

from django_app.models import InboundEmail
from gateway.consumers.email import AsyncEmailConsumer
from routers import EmailToRouter, ProtocolTypeRouter, address
from tests.email.support import Inbox, asend, make_app, message, smtp_gateway, wire

pytestmark = pytest.mark.django_db(transaction=True)


async def test_delivers_to_the_routed_consumer_with_url_route_kwargs() -> None:
    inbox = Inbox()
    raw = wire(message(to="sensor-7@devices.example.com"))
    async with smtp_gateway(make_app(inbox)) as port:
        refused = await asend(port, raw, ["sensor-7@devices.example.com"])
    assert refused == {}
    [seen] = inbox.seen
    assert seen["kwargs"] == {"device": "sensor-7"}
    assert seen["subject"] == "Printer on fire"
    assert seen["sender"] == "alice@customer.test"
    assert seen["scope"]["source"] == "smtp"
    assert seen["scope"]["helo"]
    assert seen["scope"]["peer"][0] == "127.0.0.1"
    # Byte for byte what the client sent, with SMTP's CRLF line endings.
    assert seen["raw"] == raw


async def test_unknown_recipient_refused_at_rcpt_others_delivered() -> None:
    inbox = Inbox()
    recipients = ["support@example.com", "nobody@example.com", "x1@devices.example.com"]
    async with smtp_gateway(make_app(inbox)) as port:
        refused = await asend(port, wire(message()), recipients)
    assert list(refused) == ["nobody@example.com"]
    code, text = refused["nobody@example.com"]
    assert code == 550
    assert text.startswith(b"5.1.1")
    assert sorted(seen["recipient"] for seen in inbox.seen) == [
        "support@example.com",
        "x1@devices.example.com",
    ]
    assert all(seen["scope"]["recipients"] == [recipients[0], recipients[2]] for seen in inbox.seen)


async def test_only_unknown_recipients_is_never_an_open_relay() -> None:
    inbox = Inbox()
    async with smtp_gateway(make_app(inbox)) as port:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            await asend(port, wire(message()), ["victim@elsewhere.test"])
    assert refused.value.recipients["victim@elsewhere.test"][0] == 550
    assert inbox.seen == []
    assert await InboundEmail.objects.acount() == 0


async def test_over_the_size_limit_is_552_and_not_stored() -> None:
    inbox = Inbox()
    raw = wire(message(body="x" * 5000))
    async with smtp_gateway(make_app(inbox), DATA_SIZE_LIMIT=2000) as port:
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:  # SIZE= at MAIL FROM
            await asend(port, raw, ["support@example.com"])
        assert refused.value.smtp_code == 552

        def without_size_extension() -> tuple[int, bytes]:
            with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
                client.helo("client.test")  # plain SMTP: no SIZE= parameter, caught at DATA
                client.mail("alice@customer.test")
                client.rcpt("support@example.com")
                return client.data(raw)

        code, _ = await asyncio.to_thread(without_size_extension)
    assert code == 552
    assert inbox.seen == []


async def test_failing_consumer_gets_451_then_the_resend_is_handled_once() -> None:
    inbox = Inbox(fail_times=1)
    raw = wire(message())
    recipients = ["support@example.com", "x2@devices.example.com"]
    async with smtp_gateway(make_app(inbox)) as port:
        with pytest.raises(smtplib.SMTPDataError) as failed:
            await asend(port, raw, recipients)
        assert failed.value.smtp_code == 451
        assert b"Temporary" in failed.value.smtp_error
        assert b"RuntimeError" not in failed.value.smtp_error  # nothing internal leaks
        # The sending server retries the same bytes; then again as if our 250 got lost.
        assert await asend(port, raw, recipients) == {}
        assert await asend(port, raw, recipients) == {}
    # One of the two recipients failed on the first try, the other was handled then:
    # each recipient's consumer saw the message exactly once.
    assert sorted(seen["recipient"] for seen in inbox.seen) == sorted(recipients)
    retried = [seen for seen in inbox.seen if seen["attempt"] == 2]
    assert len(retried) == 1
    rows = [row async for row in InboundEmail.objects.order_by("recipient")]
    assert [row.status for row in rows] == ["handled", "handled"]
    assert sorted(row.attempts for row in rows) == [1, 2]
    assert all(bytes(row.raw) == raw for row in rows)


async def test_rejecting_consumer_answers_its_code() -> None:
    inbox = Inbox()
    async with smtp_gateway(make_app(inbox)) as port:
        with pytest.raises(smtplib.SMTPDataError) as rejected:
            await asend(port, wire(message(subject="reject me")), ["support@example.com"])
    assert rejected.value.smtp_code == 550
    assert rejected.value.smtp_error == b"5.7.1 No thanks"
    row = await InboundEmail.objects.aget()
    assert row.status == "rejected"


async def test_overloaded_adapter_answers_451_busy() -> None:
    gate = asyncio.Event()
    entered = asyncio.Event()

    class Slow(AsyncEmailConsumer):
        async def receive(self, message: EmailMessage) -> None:
            entered.set()
            await gate.wait()

    app = ProtocolTypeRouter({"email": EmailToRouter([address(r".*", Slow.as_asgi())])})
    async with smtp_gateway(app, MAX_IN_FLIGHT=1, BUSY_DELAY=0.3) as port:
        first = asyncio.create_task(asend(port, wire(message(subject="1")), ["a@example.com"]))
        await asyncio.wait_for(entered.wait(), 30)
        started = time.monotonic()
        with pytest.raises(smtplib.SMTPDataError) as busy:
            await asend(port, wire(message(subject="2")), ["a@example.com"])
        assert time.monotonic() - started >= 0.3  # BUSY_DELAY: the 451 is held that long
        assert (busy.value.smtp_code, busy.value.smtp_error) == (
            451,
            b"4.3.2 Too busy, try again later",
        )
        gate.set()
        assert await first == {}


class KeepsItsAppAsApp:
    """A middleware that keeps the application it wraps as ``app``, as Starlette's do."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app({**scope, "wrapped": True}, receive, send)


async def test_recipients_are_routed_through_middleware_that_keeps_its_app_as_app() -> None:
    inbox = Inbox()
    router = make_app(inbox).application_mapping["email"]  # type: ignore[attr-defined]
    app = KeepsItsAppAsApp(ProtocolTypeRouter({"email": KeepsItsAppAsApp(router)}))
    async with smtp_gateway(app) as port:
        refused = await asend(port, wire(message()), ["support@example.com"])
    assert refused == {}  # accepted at RCPT, not 550 for want of a router
    [seen] = inbox.seen
    assert (seen["recipient"], seen["scope"]["wrapped"]) == ("support@example.com", True)


class ExplodingRouter(EmailToRouter):
    def accepts(self, recipient: str) -> bool:
        raise RuntimeError("secret internals")


async def test_unexpected_errors_answer_451_without_leaking() -> None:
    app = ProtocolTypeRouter({"email": ExplodingRouter([])})
    async with smtp_gateway(app) as port:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            await asend(port, wire(message()), ["support@example.com"])
    code, text = refused.value.recipients["support@example.com"]
    assert code == 451  # aiosmtpd alone would answer a permanent 500 with the error text
    assert b"secret" not in text


async def test_reply_is_mailed_through_django_after_handling(mailoutbox: list[Any]) -> None:
    class Desk(AsyncEmailConsumer):
        reply_limiter = None

        async def receive(self, message: EmailMessage) -> None:
            await self.reply(f"Ticket opened for {self.subject}.")

    app = ProtocolTypeRouter({"email": EmailToRouter([address(r"support@.*", Desk.as_asgi())])})
    async with smtp_gateway(app) as port:
        await asend(port, wire(message()), ["support@example.com"])
    [reply] = mailoutbox
    assert reply.to == ["alice@customer.test"]
    assert reply.from_email == "support@example.com"
    assert reply.body == "Ticket opened for Printer on fire."
    assert reply.extra_headers["Auto-Submitted"] == "auto-replied"


@pytest.mark.parametrize("delay", [0.5, 0])
async def test_past_max_connections_421_comes_after_busy_delay(delay: float) -> None:
    class Take(AsyncEmailConsumer):
        async def receive(self, message: EmailMessage) -> None:
            return None

    app = ProtocolTypeRouter({"email": EmailToRouter([address(r".*", Take.as_asgi())])})
    async with smtp_gateway(app, MAX_CONNECTIONS=1, BUSY_DELAY=delay) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert (await reader.readline()).startswith(b"220 ")  # the one session allowed
        started = time.monotonic()
        other_reader, other_writer = await asyncio.open_connection("127.0.0.1", port)
        answer = await asyncio.wait_for(other_reader.readline(), 10)
        waited = time.monotonic() - started
        assert answer == b"421 4.3.2 Too many connections, try again later\r\n"
        assert await other_reader.read() == b""  # and closed
        if delay:
            assert waited >= delay
        else:
            assert waited < 0.5
        for stream in (writer, other_writer):
            stream.close()
