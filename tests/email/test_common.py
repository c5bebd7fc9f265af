"""The shared email intake: scopes from raw bytes, dedup, outcomes, the outbox; parsing fuzz."""

from __future__ import annotations

import asyncio
from email.message import EmailMessage
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from django_app.models import InboundEmail
from gateway import email as mail
from gateway.consumers.email import AsyncEmailConsumer
from gateway.email_run import run_email_app
from gateway.email_store import NoMailStore, load_mail_store
from gateway.exceptions import UnknownMessageType
from gateway.middleware import BaseMiddleware
from gateway.pipeline import KeyedDispatcher, RetryPolicy
from gateway.types import Receive, Scope, Send
from protocol_adapters.email_common import Delivery, EmailIntake, scope_from_raw, smtp_reply
from routers import EmailToRouter, ProtocolTypeRouter, address

RAW = (
    b"From: alice@customer.test\r\nTo: support@example.com\r\nSubject: Help\r\n"
    b"Message-ID: <c1@customer.test>\r\n\r\nbody\r\n"
)


class Behaviour:
    """What the test consumer does next; shared by one test."""

    def __init__(self) -> None:
        self.fail = 0
        self.reject = False
        self.reply = False
        self.calls: list[int] = []


def intake_for(
    behaviour: Behaviour, *, store: bool = True, max_in_flight: int = 10, attempts: int = 1
) -> EmailIntake:
    class Consumer(AsyncEmailConsumer):
        reply_limiter = None

        async def receive(self, message: EmailMessage) -> None:
            behaviour.calls.append(self.scope["attempt"])
            if behaviour.fail:
                behaviour.fail -= 1
                raise RuntimeError("boom")
            if behaviour.reply:
                await self.reply("Got it.")
            if behaviour.reject:
                await self.reject(550, "5.7.1 Nope")

    app = ProtocolTypeRouter(
        {"email": EmailToRouter([address(r"support@example\.com", Consumer.as_asgi())])}
    )
    dispatcher = KeyedDispatcher(
        "email",
        max_in_flight=max_in_flight,
        retry=RetryPolicy(attempts=attempts, initial_backoff=0.01),
    )
    return EmailIntake(
        app, adapter="test", source="imap", dispatcher=dispatcher, store=load_mail_store(store)
    )


def test_build_scope_reads_the_message_id_from_the_raw_bytes() -> None:
    scope = scope_from_raw(
        RAW, source="imap", adapter="box", sender="", recipient="support@example.com",
        mailbox="INBOX", uid=7, uidvalidity=42,
    )  # fmt: skip
    assert scope["type"] == "email"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "1.0"}
    assert scope["message_id"] == "c1@customer.test"
    assert (scope["mailbox"], scope["uid"], scope["uidvalidity"]) == ("INBOX", 7, 42)
    assert scope["recipients"] == ["support@example.com"]
    assert scope["peer"] is None


def test_intake_accepts_what_the_router_accepts() -> None:
    intake = intake_for(Behaviour(), store=False)
    assert intake.accepts("SUPPORT@example.com")
    assert not intake.accepts("sales@example.com")


class KeepsItsAppAsApp:
    """A middleware that keeps the application it wraps as ``app``, as Starlette's do."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
    return None


def test_intake_finds_the_router_behind_middleware_keeping_app_or_inner() -> None:
    router = EmailToRouter([address(r"support@example\.com", endpoint)])
    for app in (
        KeepsItsAppAsApp(ProtocolTypeRouter({"email": KeepsItsAppAsApp(router)})),
        BaseMiddleware(ProtocolTypeRouter({"email": KeepsItsAppAsApp(BaseMiddleware(router))})),
    ):
        dispatcher = KeyedDispatcher("email")
        intake = EmailIntake(
            app, adapter="t", source="smtp", dispatcher=dispatcher, store=NoMailStore()
        )
        assert intake.accepts("support@example.com")
        assert not intake.accepts("sales@example.com")


@pytest.mark.django_db(transaction=True)
async def test_handled_once_then_duplicate() -> None:
    behaviour = Behaviour()
    intake = intake_for(behaviour)
    first = await intake.deliver(RAW, sender="a@b.test", recipient="support@example.com")
    again = await intake.deliver(RAW, sender="a@b.test", recipient="support@example.com")
    assert (first.status, first.code, first.final) == ("handled", 250, True)
    assert (again.status, again.code, again.final) == ("duplicate", 250, True)
    assert behaviour.calls == [1]
    assert await intake.store.flush()
    row = await InboundEmail.objects.aget()
    assert (row.status, row.source, row.subject, bytes(row.raw)) == ("handled", "imap", "Help", RAW)
    assert row.handled_at is not None


@pytest.mark.django_db(transaction=True)
async def test_failed_then_retried_by_the_dispatcher_then_dead_lettered() -> None:
    behaviour = Behaviour()
    behaviour.fail = 5
    intake = intake_for(behaviour, attempts=2)
    delivery = await intake.deliver(RAW, sender="a@b.test", recipient="support@example.com")
    assert (delivery.status, delivery.code, delivery.final) == ("failed", 451, False)
    assert isinstance(delivery.error, RuntimeError)
    assert behaviour.calls == [1, 2]
    assert await intake.store.flush()
    row = await InboundEmail.objects.aget()
    assert (row.status, row.attempts) == ("failed", 2)
    assert "boom" in row.error
    # A later delivery of the same message (IMAP retry, SMTP resend) runs it again.
    behaviour.fail = 0
    retried = await intake.deliver(RAW, sender="a@b.test", recipient="support@example.com")
    assert retried.status == "handled"
    assert behaviour.calls == [1, 2, 3]
    assert await intake.store.flush()
    assert (await InboundEmail.objects.aget()).status == "handled"


@pytest.mark.django_db(transaction=True)
async def test_rejected_is_final_but_runs_again_when_redelivered() -> None:
    behaviour = Behaviour()
    behaviour.reject = True
    intake = intake_for(behaviour)
    delivery = await intake.deliver(RAW, sender="a@b.test", recipient="support@example.com")
    assert (delivery.status, delivery.code, delivery.reason) == ("rejected", 550, "5.7.1 Nope")
    assert delivery.final
    await intake.deliver(RAW, sender="a@b.test", recipient="support@example.com")
    assert behaviour.calls == [1, 2]
    await intake.aclose(5)
    assert (await InboundEmail.objects.aget()).status == "rejected"


@pytest.mark.django_db(transaction=True)
async def test_same_message_to_two_recipients_is_two_rows() -> None:
    behaviour = Behaviour()
    intake = intake_for(behaviour)
    await intake.deliver(RAW, sender="", recipient="support@example.com")
    await intake.deliver(RAW, sender="", recipient="support@example.com")
    other = await intake.deliver(RAW, sender="", recipient="Support@Example.com")
    assert other.status == "handled"  # a different recipient string is a different delivery
    assert await intake.store.flush()
    assert await InboundEmail.objects.acount() == 2


async def test_without_a_store_nothing_is_deduplicated() -> None:
    behaviour = Behaviour()
    intake = intake_for(behaviour, store=False)
    for _ in range(2):
        await intake.deliver(RAW, sender="", recipient="support@example.com")
    assert behaviour.calls == [1, 1]


async def test_busy_when_the_dispatcher_is_full_and_not_waiting() -> None:
    gate = asyncio.Event()

    async def slow(scope: Scope, receive: Receive, send: Send) -> None:
        await gate.wait()

    dispatcher = KeyedDispatcher("email", max_in_flight=1)
    intake = EmailIntake(
        slow, adapter="t", source="smtp", dispatcher=dispatcher, store=NoMailStore()
    )
    first = asyncio.create_task(intake.deliver(RAW, sender="", recipient="a@b.test"))
    await asyncio.sleep(0.05)
    assert intake.busy
    busy = await intake.deliver(RAW + b"x", sender="", recipient="a@b.test", wait=False)
    assert (busy.status, busy.code) == ("busy", 451)
    gate.set()
    assert (await first).status == "handled"
    assert not intake.busy


@pytest.mark.django_db(transaction=True)
async def test_replies_are_sent_through_django_after_the_app_returned(mailoutbox: Any) -> None:
    behaviour = Behaviour()
    behaviour.reply = True
    behaviour.fail = 1
    intake = intake_for(behaviour)
    failed = await intake.deliver(
        RAW, sender="alice@customer.test", recipient="support@example.com"
    )
    assert failed.status == "failed"
    assert mailoutbox == []  # nothing mailed from the failed attempt
    await intake.deliver(RAW, sender="alice@customer.test", recipient="support@example.com")
    [sent] = mailoutbox
    assert sent.to == ["alice@customer.test"]
    assert sent.subject == "Re: Help"
    assert sent.extra_headers["Auto-Submitted"] == "auto-replied"
    assert sent.extra_headers["In-Reply-To"] == "<c1@customer.test>"


async def test_run_email_app_rules() -> None:
    scope = scope_from_raw(RAW, source="smtp", adapter="t", sender="", recipient="a@b.test")

    async def unknown_event(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "email.frobnicate"})

    with pytest.raises(UnknownMessageType):
        await run_email_app(unknown_event, scope, RAW)

    async def hangs(scope: Scope, receive: Receive, send: Send) -> None:
        assert (await receive())["raw"] == RAW
        await receive()  # waits for a disconnect that only the timeout brings

    with pytest.raises(TimeoutError):
        await run_email_app(hangs, scope, RAW, timeout=0.05)

    async def first_reject_wins(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "email.reject", "code": 451, "reason": "4.7.1 Later"})
        await send({"type": "email.reject"})

    result = await run_email_app(first_reject_wins, scope, RAW)
    assert result.rejection == {"type": "email.reject", "code": 451, "reason": "4.7.1 Later"}


def test_smtp_reply_combines_recipients() -> None:
    ok = Delivery("handled", 250, "2.0.0 OK")
    dup = Delivery("duplicate", 250, "2.0.0 OK")
    hard = Delivery("rejected", 550, "5.7.1 No")
    soft = Delivery("rejected", 450, "4.2.0 Later")
    failed = Delivery("failed", 451, "4.3.0 Temporary failure")
    assert smtp_reply([ok, dup]) == "250 2.0.0 OK"
    assert smtp_reply([ok, hard]) == "550 5.7.1 No"
    assert smtp_reply([hard, soft]) == "450 4.2.0 Later"
    assert smtp_reply([hard, failed, ok]) == "451 4.3.0 Temporary failure"


# --- hypothesis: parsing never raises ---------------------------------------------------------

header_names = st.sampled_from(
    ["From", "To", "Subject", "Message-ID", "In-Reply-To", "References", "Reply-To",
     "Content-Type", "Content-Transfer-Encoding", "Auto-Submitted", "Precedence", "X-Loop"]
)  # fmt: skip
header_values = st.one_of(
    st.binary(max_size=60).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
    st.sampled_from(
        [b"=?utf-8?q?caf=C3=A9?=", b"=?x-bad?b?!!?=", b"<a@b> <c@d", b'"unclosed <x@y>',
         b"multipart/mixed; boundary=", b"text/plain; charset=x-nope", b"base64", b"<>",
         b"\xff\xfe@\xc3", b"a@b, ,@, <@>"]
    ),
)  # fmt: skip
raw_messages = st.builds(
    lambda headers, body: (
        b"".join(n.encode() + b": " + v + b"\r\n" for n, v in headers) + b"\r\n" + body
    ),
    st.lists(st.tuples(header_names, header_values), max_size=8),
    st.binary(max_size=300),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(raw_messages, st.binary(max_size=400)))
def test_parsing_helpers_never_raise(raw: bytes) -> None:
    message = mail.parse_message(raw)
    assert isinstance(mail.subject(message), str)
    assert isinstance(mail.sender_address(message), str)
    assert mail.text_body(message) is None or isinstance(mail.text_body(message), str)
    assert mail.html_body(message) is None or isinstance(mail.html_body(message), str)
    assert all(isinstance(a.content, bytes) for a in mail.attachments(message))
    assert all("<" not in item for item in mail.references(message))
    mail.message_id(message)
    mail.in_reply_to(message)
    refusal = mail.auto_reply_refusal(message, sender="a@b.test", own_address="s@x.test")
    assert refusal is None or isinstance(refusal, str)
    scope = scope_from_raw(raw, source="smtp", adapter="t", sender="a@b.test", recipient="s@x.test")
    assert scope["message_id"] is None or isinstance(scope["message_id"], str)
    event = mail.make_reply_event(message, scope, "thanks")
    assert event["headers"]["Auto-Submitted"] == "auto-replied"
    assert mail.validate_send_event(event)["to"] == event["to"]


def _full_parse(raw: bytes) -> Any:
    from email import policy
    from email.parser import BytesParser

    return BytesParser(policy=policy.default).parsebytes(raw)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(raw_messages, st.binary(max_size=400)))
def test_fast_parse_equals_the_full_parse(raw: bytes) -> None:
    fast, full = mail.parse_message(raw), _full_parse(raw)
    assert fast.is_multipart() == full.is_multipart()
    assert list(fast.raw_items()) == list(full.raw_items())
    assert [type(d) for d in fast.defects] == [type(d) for d in full.defects]
    if not full.is_multipart():
        assert fast.get_payload() == full.get_payload()
    assert mail.text_body(fast) == mail.text_body(full)
    assert mail.attachments(fast) == mail.attachments(full)
