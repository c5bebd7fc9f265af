"""A reply that cannot be sent is a delivery failure: real SMTP clients, a real outbound relay.

The gateway's SMTP adapter gets mail from smtplib; replies leave through Django's SMTP
``EMAIL_BACKEND``, pointed first at a closed port (nothing listens, as with Django's default
of localhost:25 on a laptop), then at a real SMTP server (aiosmtpd's Controller).
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from django_app.deadletters import areplay, store_dead_letter
from django_app.models import InboundEmail
from django_app.models.deadletters import DeadLetter
from gateway.consumers.email import AsyncEmailConsumer, EmailConsumer
from routers import EmailToRouter, ProtocolTypeRouter, address
from tests.email.imap_support import account, eventually, flags, running_adapter
from tests.email.imap_support import message as imap_message
from tests.email.outbound import closed_port, running_relay, send_replies_to
from tests.email.support import asend, message, smtp_gateway, wire
from tests.integration.dovecot import Dovecot, running_dovecot

pytestmark = pytest.mark.django_db(transaction=True)


def desk_app(calls: list[int], **attributes: Any) -> Any:
    """support@example.com: a desk that opens a ticket and replies to say so."""

    class Desk(AsyncEmailConsumer):
        reply_limiter = None

        async def receive(self, message: EmailMessage) -> None:
            calls.append(self.scope["attempt"])
            await self.reply(f"Ticket opened for {self.subject}.")

    for name, value in attributes.items():
        setattr(Desk, name, value)
    return ProtocolTypeRouter({"email": EmailToRouter([address(r"support@.*", Desk.as_asgi())])})


async def test_an_unsent_reply_answers_451_and_the_resend_delivers_it(settings: Any) -> None:
    calls: list[int] = []
    raw = wire(message())
    with closed_port() as nowhere, running_relay() as (relay, relay_port):
        send_replies_to(settings, nowhere)
        async with smtp_gateway(desk_app(calls)) as port:
            with pytest.raises(smtplib.SMTPDataError) as failed:
                await asend(port, raw, ["support@example.com"])
            assert failed.value.smtp_code == 451  # what a failing consumer gets
            assert b"Refused" not in failed.value.smtp_error  # nothing internal leaks
        row = await InboundEmail.objects.aget()  # written when the gateway stopped
        assert row.status == "failed"
        assert "ConnectionRefusedError" in row.error
        assert "Ticket opened for Printer on fire." in row.error  # the unsent reply
        # The relay is back; the sending server retries the same bytes.
        send_replies_to(settings, relay_port)
        async with smtp_gateway(desk_app(calls)) as port:
            assert await asend(port, raw, ["support@example.com"]) == {}
    assert relay.bodies() == ["Ticket opened for Printer on fire."]
    assert relay.received[0]["To"] == "alice@customer.test"
    # SMTP keeps nothing between the sender's tries: its retry runs the consumer again.
    assert calls == [1, 2]
    row = await InboundEmail.objects.aget()
    assert (row.status, row.attempts) == ("handled", 2)


async def test_the_default_django_backend_target_nothing_listening_is_not_a_250(
    settings: Any,
) -> None:
    class SyncDesk(EmailConsumer):
        reply_limiter = None

        def receive(self, message: EmailMessage) -> None:
            self.send_mail(
                {"type": "email.send", "to": ["ops@example.com"], "subject": "New", "body": "x"}
            )

    app = ProtocolTypeRouter({"email": EmailToRouter([address(r"support@.*", SyncDesk.as_asgi())])})
    with closed_port() as nowhere:
        send_replies_to(settings, nowhere)
        async with smtp_gateway(app) as port:
            with pytest.raises(smtplib.SMTPDataError) as failed:
                await asend(port, wire(message()), ["support@example.com"])
    assert failed.value.smtp_code == 451


class LogsOnly(AsyncEmailConsumer):
    reply_limiter = None
    on_reply_failure = "log"

    async def receive(self, message: EmailMessage) -> None:
        await self.reply("Thanks, noted.")


class LogsThisReply(AsyncEmailConsumer):
    reply_limiter = None

    async def receive(self, message: EmailMessage) -> None:
        await self.reply("Thanks, noted.", on_failure="log")


@pytest.mark.parametrize("consumer", [LogsOnly, LogsThisReply])
async def test_a_consumer_may_choose_to_only_log_an_unsent_reply(
    consumer: type[AsyncEmailConsumer], settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    app = ProtocolTypeRouter({"email": EmailToRouter([address(r"support@.*", consumer.as_asgi())])})
    caplog.set_level(logging.WARNING, "gateway.replies")
    with closed_port() as nowhere:
        send_replies_to(settings, nowhere)
        async with smtp_gateway(app) as port:
            assert await asend(port, wire(message()), ["support@example.com"]) == {}
    row = await InboundEmail.objects.aget()
    assert row.status == "handled"
    [record] = [r for r in caplog.records if r.name == "gateway.replies"]
    assert "Thanks, noted." in record.getMessage()
    assert "ConnectionRefusedError" in record.getMessage()


async def test_a_bad_on_failure_value_fails_the_message(settings: Any) -> None:
    class Typo(AsyncEmailConsumer):
        reply_limiter = None

        async def receive(self, message: EmailMessage) -> None:
            await self.reply("hello", on_failure="ignore")  # type: ignore[arg-type]

    app = ProtocolTypeRouter({"email": EmailToRouter([address(r"support@.*", Typo.as_asgi())])})
    async with smtp_gateway(app) as port:
        with pytest.raises(smtplib.SMTPDataError) as failed:
            await asend(port, wire(message()), ["support@example.com"])
    assert failed.value.smtp_code == 451
    row = await InboundEmail.objects.aget()
    assert "must be 'fail' or 'log'" in row.error


# --- IMAP: the adapter retries by itself --------------------------------------------------------


@pytest.fixture
def dovecot(tmp_path: Path) -> Iterator[Dovecot]:
    with running_dovecot(tmp_path) as server:
        yield server


def imap_desk(calls: list[int]) -> Any:
    class Desk(AsyncEmailConsumer):
        reply_limiter = None

        async def receive(self, message: EmailMessage) -> None:
            calls.append(self.scope["attempt"])
            await self.reply(f"We are on it: {self.subject}.")

    return Desk.as_asgi()


async def seen_flags(dovecot: Dovecot) -> dict[int, bool]:
    return {uid: "\\Seen" in found for uid, found in (await flags(dovecot)).items()}


@pytest.mark.integration
async def test_imap_retry_sends_only_the_unsent_reply(dovecot: Dovecot, settings: Any) -> None:
    calls: list[int] = []
    with running_relay(fail_next=1) as (relay, relay_port):
        send_replies_to(settings, relay_port)
        async with running_adapter(imap_desk(calls), [account(dovecot)]) as running:
            await asyncio.to_thread(dovecot.append, imap_message("printer"))
            await eventually(lambda: _all_seen(dovecot), "the mail seen")
    assert calls == [1]  # the consumer ran once; only its reply was tried again
    assert relay.attempts == 2
    assert relay.bodies() == ["We are on it: printer."]
    assert running.dead == []


@pytest.mark.integration
async def test_imap_retry_does_not_resend_the_mail_that_went_out(
    dovecot: Dovecot, settings: Any
) -> None:
    class TwoMails(AsyncEmailConsumer):
        reply_limiter = None

        async def receive(self, message: EmailMessage) -> None:
            await self.reply("First: we got it.")
            await self.send_mail(
                {
                    "type": "email.send",
                    "to": ["ops@example.com"],
                    "subject": "New",
                    "body": "Second.",
                }
            )

    with running_relay(refuse=frozenset({2})) as (relay, relay_port):  # the second mail, once
        send_replies_to(settings, relay_port)
        async with running_adapter(TwoMails.as_asgi(), [account(dovecot)]) as running:
            await asyncio.to_thread(dovecot.append, imap_message("printer"))
            await eventually(lambda: _all_seen(dovecot), "the mail seen")
    assert relay.attempts == 3
    assert relay.bodies() == ["First: we got it.", "Second."]
    assert running.dead == []


async def _all_seen(dovecot: Dovecot) -> bool:
    found = await seen_flags(dovecot)
    return bool(found) and all(found.values())


@pytest.mark.integration
async def test_imap_dead_letters_the_unsent_reply_and_replay_sends_it(
    dovecot: Dovecot, settings: Any
) -> None:
    calls: list[int] = []
    desk = imap_desk(calls)
    with closed_port() as nowhere:
        send_replies_to(settings, nowhere)
        async with running_adapter(desk, [account(dovecot)]) as running:
            await asyncio.to_thread(dovecot.append, imap_message("printer"))
            await eventually(lambda: running.dead, "a dead letter")
        assert await seen_flags(dovecot) == {1: False}  # left unseen, as for a consumer error
    [letter] = running.dead
    assert letter.attempts == 3
    assert calls == [1]
    assert "ReplyNotSent" in letter.error
    assert "ConnectionRefusedError" in letter.error
    assert 'Unsent reply: {"bcc": []' in letter.error
    assert "We are on it: printer." in letter.error
    await store_dead_letter(letter)
    stored = await DeadLetter.objects.aget()
    assert "We are on it: printer." in stored.error  # what the admin shows
    # Replay runs the consumer again (the letter keeps the message, not its replies).
    with running_relay() as (relay, relay_port):
        send_replies_to(settings, relay_port)
        await areplay(stored, app=EmailToRouter([address(r"inbox@example\.com", desk)]))
    assert relay.bodies() == ["We are on it: printer."]
    assert calls == [1, 2]
