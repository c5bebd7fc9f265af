"""Email consumers through `EmailCommunicator`: helpers, reply, reject, the loop guard."""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any

import pytest

from gateway.consumers.email import AsyncEmailConsumer, EmailConsumer
from gateway.email import ReplyRateLimiter
from gateway.testing import EmailCommunicator

THREADED = (
    b"From: =?utf-8?q?Zo=C3=AB_K?= <zoe@customer.test>\r\n"
    b"Reply-To: tickets@customer.test\r\n"
    b"To: support@example.com\r\n"
    b"Subject: =?utf-8?b?R3LDvMOfZQ==?= and more\r\n"
    b"Message-ID: <m3@customer.test>\r\n"
    b"In-Reply-To: <m2@example.com>\r\n"
    b"References: <m1@customer.test> <m2@example.com>\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
    b'--b1\r\nContent-Type: multipart/alternative; boundary="b2"\r\n\r\n'
    b"--b2\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\ncaf=E9 is broken\r\n"
    b"--b2\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>caf\xc3\xa9</p>\r\n--b2--\r\n"
    b"--b1\r\nContent-Type: image/png\r\nContent-Disposition: attachment; filename=shot.png\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n--b1--\r\n"
)


def simple(**headers: str) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = headers.pop("From", "alice@customer.test")
    mail["To"] = "support@example.com"
    mail["Subject"] = headers.pop("Subject", "Help")
    mail["Message-ID"] = "<q1@customer.test>"
    for name, value in headers.items():
        mail[name.replace("_", "-")] = value
    mail.set_content("Please help.")
    return mail


class Helpers(AsyncEmailConsumer):
    seen: dict[str, Any] = {}

    async def receive(self, message: EmailMessage) -> None:
        Helpers.seen = {
            "subject": self.subject,
            "sender": self.sender,
            "text": self.text,
            "html": self.html,
            "attachments": self.attachments,
            "message_id": self.message_id,
            "in_reply_to": self.in_reply_to,
            "references": self.references,
            "is_message": isinstance(message, EmailMessage),
        }


async def test_helpers_decode_the_message() -> None:
    outcome = await EmailCommunicator(Helpers.as_asgi(), THREADED).deliver()
    assert outcome.handled
    seen = Helpers.seen
    assert seen["subject"] == "Grüße and more"
    assert seen["sender"] == "zoe@customer.test"
    assert seen["text"].strip() == "café is broken"
    assert seen["html"].strip() == "<p>café</p>"
    [attachment] = seen["attachments"]
    assert (attachment.filename, attachment.content_type) == ("shot.png", "image/png")
    assert attachment.content == b"\x89PNG\r\n\x1a\n"
    assert seen["message_id"] == "m3@customer.test"
    assert seen["in_reply_to"] == "m2@example.com"
    assert seen["references"] == ["m1@customer.test", "m2@example.com"]
    assert seen["is_message"]


class Replier(AsyncEmailConsumer):
    reply_limiter = None
    sent: list[bool] = []

    async def receive(self, message: EmailMessage) -> None:
        Replier.sent.append(await self.reply("We are on it.", html="<p>We are on it.</p>"))


async def test_reply_carries_threading_and_auto_submitted_headers() -> None:
    outcome = await EmailCommunicator(Replier.as_asgi(), THREADED).deliver()
    [reply] = outcome.sent
    assert reply["to"] == ["tickets@customer.test"]  # Reply-To wins over From
    assert reply["subject"] == "Re: Grüße and more"
    assert reply["from_email"] == "support@example.com"
    assert reply["html"] == "<p>We are on it.</p>"
    headers = reply["headers"]
    assert headers["In-Reply-To"] == "<m3@customer.test>"
    assert headers["References"] == "<m1@customer.test> <m2@example.com> <m3@customer.test>"
    assert headers["Auto-Submitted"] == "auto-replied"
    assert headers["X-Loop"] == "support@example.com"


@pytest.mark.parametrize(
    ("headers", "sender"),
    [
        ({"Auto_Submitted": "auto-replied"}, "alice@customer.test"),
        ({"Auto_Submitted": "auto-generated; type=vacation"}, "alice@customer.test"),
        ({"Precedence": "bulk"}, "alice@customer.test"),
        ({"Precedence": "list"}, "alice@customer.test"),
        ({"Precedence": "junk"}, "alice@customer.test"),
        ({"X_Loop": "support@example.com"}, "alice@customer.test"),
        ({}, ""),
    ],
    ids=["auto-replied", "auto-generated", "bulk", "list", "junk", "own-x-loop", "null-sender"],
)
async def test_loop_guard_refuses_auto_replies(headers: dict[str, str], sender: str) -> None:
    Replier.sent = []
    communicator = EmailCommunicator(Replier.as_asgi(), simple(**headers), sender=sender)
    outcome = await communicator.deliver()
    assert (Replier.sent, outcome.sent, outcome.handled) == ([False], [], True)


async def test_loop_guard_allows_auto_submitted_no_and_foreign_x_loop() -> None:
    Replier.sent = []
    mail = simple(Auto_Submitted="no", X_Loop="helpdesk@elsewhere.test")
    outcome = await EmailCommunicator(Replier.as_asgi(), mail).deliver()
    assert Replier.sent == [True]
    assert len(outcome.sent) == 1


class Limited(Replier):
    reply_limiter = ReplyRateLimiter(limit=2, period=3600)


async def test_replies_are_rate_limited_per_sender() -> None:
    Replier.sent = []
    for sender in ["a@x.test", "a@x.test", "A@X.test", "b@x.test"]:
        await EmailCommunicator(Limited.as_asgi(), simple(From=sender)).deliver()
    assert Replier.sent == [True, True, False, True]


class Rejecter(AsyncEmailConsumer):
    async def receive(self, message: EmailMessage) -> None:
        if "spam" in self.subject:
            await self.reject(554, "5.7.1 Looks like spam")


async def test_reject_is_reported() -> None:
    outcome = await EmailCommunicator(Rejecter.as_asgi(), simple(Subject="spam!")).deliver()
    assert outcome.rejected == {
        "type": "email.reject",
        "code": 554,
        "reason": "5.7.1 Looks like spam",
    }
    assert not outcome.handled
    assert (await EmailCommunicator(Rejecter.as_asgi(), simple()).deliver()).handled


async def test_reject_validates_the_code() -> None:
    class BadCode(AsyncEmailConsumer):
        async def receive(self, message: EmailMessage) -> None:
            await self.reject(250, "fine")

    with pytest.raises(ValueError, match="400-599"):
        await EmailCommunicator(BadCode.as_asgi(), simple()).deliver()


class SyncTicket(EmailConsumer):
    reply_limiter = None
    seen: list[tuple[str, str | None, dict[str, Any]]] = []

    def receive(self, message: EmailMessage) -> None:
        SyncTicket.seen.append((self.subject, self.text, self.scope["url_route"]["kwargs"]))
        self.reply("Ticket opened.")


async def test_sync_consumer_in_a_router_replies() -> None:
    from routers import EmailToRouter, address

    app = EmailToRouter([address(r"(?P<queue>\w+)@example\.com", SyncTicket.as_asgi())])
    outcome = await EmailCommunicator(app, simple(Subject="Broken")).deliver()
    assert SyncTicket.seen == [("Broken", "Please help.\n", {"queue": "support"})]
    assert [event["subject"] for event in outcome.sent] == ["Re: Broken"]


async def test_a_failing_consumer_raises_from_deliver() -> None:
    class Failing(AsyncEmailConsumer):
        async def receive(self, message: EmailMessage) -> None:
            raise RuntimeError("database is down")

    with pytest.raises(RuntimeError, match="database is down"):
        await EmailCommunicator(Failing.as_asgi(), simple()).deliver()
