"""Malformed, odd and large mail through the SMTP adapter: handled, never a crash."""

from __future__ import annotations

from email.message import EmailMessage

import pytest

from django_app.models import InboundEmail
from tests.email.support import Inbox, asend, make_app, message, smtp_gateway, wire

pytestmark = pytest.mark.django_db(transaction=True)

BROKEN_MIME = (
    b"From: a@customer.test\r\nTo: support@example.com\r\nSubject: broken\r\n"
    b'Content-Type: multipart/mixed; boundary="never-closed"\r\n\r\n'
    b"--never-closed\r\nContent-Type: text/plain\r\n\r\nfirst part\r\n"
    b"--never-closed\r\nContent-Type: application/octet-stream\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\n!!!not base64!!!\r\n"
)
UNDECLARED_CHARSET = (
    b"From: a@customer.test\r\nTo: support@example.com\r\nSubject: caf\xc3\xa9\r\n"
    b"\r\nna\xc3\xafve body, no charset declared\r\n"
)
WRONG_CHARSET = (
    b"From: a@customer.test\r\nTo: support@example.com\r\nSubject: =?x-no-such?q?abc?=\r\n"
    b"Content-Type: text/plain; charset=x-no-such-charset\r\n\r\nbody \xff\xfe\r\n"
)
LATIN1_AS_UTF8 = (
    b"From: =?utf-8?q?Z=E9?= <a@customer.test>\r\nTo: support@example.com\r\n"
    b"Subject: bad\r\nContent-Type: text/plain; charset=utf-8\r\n\r\ncaf\xe9\r\n"
)
NO_HEADERS = b"\r\njust a body, no From, no Subject, no Message-ID\r\n"


@pytest.mark.parametrize(
    ("raw", "subject", "text_contains"),
    [
        (BROKEN_MIME, "broken", "first part"),
        (UNDECLARED_CHARSET, "café", "body, no charset declared"),
        (WRONG_CHARSET, "abc", "body"),  # unknown charset: read as ASCII
        (LATIN1_AS_UTF8, "bad", "caf"),
        (NO_HEADERS, "", "just a body"),
    ],
    ids=["broken-mime", "undeclared-charset", "wrong-charset", "8bit-wrong-bytes", "no-headers"],
)
async def test_malformed_mail_is_handled(raw: bytes, subject: str, text_contains: str) -> None:
    inbox = Inbox()
    async with smtp_gateway(make_app(inbox)) as port:
        assert await asend(port, raw, ["support@example.com"]) == {}
    [seen] = inbox.seen
    assert seen["raw"] == raw
    assert seen["subject"] == subject
    assert text_contains in (seen["text"] or "")
    row = await InboundEmail.objects.aget()
    assert (row.status, bytes(row.raw)) == ("handled", raw)


async def test_missing_message_id_still_deduplicated_by_hash() -> None:
    inbox = Inbox()
    async with smtp_gateway(make_app(inbox)) as port:
        await asend(port, NO_HEADERS, ["support@example.com"])
        await asend(port, NO_HEADERS, ["support@example.com"])
    assert len(inbox.seen) == 1
    assert inbox.seen[0]["scope"]["message_id"] is None


async def test_ten_megabyte_attachment_with_the_limit_raised() -> None:
    inbox = Inbox()
    mail = message(subject="big")
    blob = bytes(range(256)) * (10 * 1024 * 1024 // 256)
    mail.add_attachment(blob, maintype="application", subtype="octet-stream", filename="dump.bin")
    raw = wire(mail)
    async with smtp_gateway(make_app(inbox), DATA_SIZE_LIMIT=20 * 1024 * 1024) as port:
        assert await asend(port, raw, ["support@example.com"]) == {}
    [seen] = inbox.seen
    [attachment] = seen["attachments"]
    assert (attachment.filename, attachment.content) == ("dump.bin", blob)
    row = await InboundEmail.objects.aget()
    assert row.size == len(raw)


async def test_five_hundred_recipients() -> None:
    inbox = Inbox()
    recipients = [f"unit-{n}@devices.example.com" for n in range(500)]
    mail: EmailMessage = message(to="undisclosed-recipients:;")
    async with smtp_gateway(make_app(inbox)) as port:
        assert await asend(port, wire(mail), recipients) == {}
    assert sorted(seen["kwargs"]["device"] for seen in inbox.seen) == sorted(
        f"unit-{n}" for n in range(500)
    )
    assert await InboundEmail.objects.filter(status="handled").acount() == 500


async def test_more_than_max_recipients_is_452_for_the_rest() -> None:
    inbox = Inbox()
    recipients = [f"unit-{n}@devices.example.com" for n in range(5)]
    async with smtp_gateway(make_app(inbox), MAX_RECIPIENTS=3) as port:
        refused = await asend(port, wire(message()), recipients)
    assert {address: code for address, (code, _) in refused.items()} == {
        recipients[3]: 452,
        recipients[4]: 452,
    }
    assert len(inbox.seen) == 3
