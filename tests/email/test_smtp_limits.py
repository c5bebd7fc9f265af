"""Bounded input over SMTP: a line without end, the banner, open connections counted right."""

from __future__ import annotations

import asyncio
import logging
import smtplib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from django_app.models import InboundEmail
from gateway.conf import GatewaySettings
from gateway.server import Gateway
from protocol_adapters.smtp import SMTPAdapter
from tests.email.support import (
    SMTP_ADAPTER,
    TIMEOUT,
    Inbox,
    asend,
    make_app,
    message,
    smtp_gateway,
    wire,
)

pytestmark = pytest.mark.django_db(transaction=True)

CHUNK = b"x" * 65536


@asynccontextmanager
async def running(inbox: Inbox, **options: Any) -> AsyncIterator[tuple[Gateway, int]]:
    """A Gateway with only the SMTP adapter on a free port: the gateway and the port."""
    entry = {"BACKEND": SMTP_ADAPTER, "OPTIONS": {"PORT": 0, **options}}
    settings = {"HTTP": {"ENABLED": False}, "SHUTDOWN_TIMEOUT": 5, "ADAPTERS": {"smtp": entry}}
    gateway = Gateway(make_app(inbox), settings=GatewaySettings(settings))
    ready = asyncio.Event()
    task = asyncio.create_task(gateway.serve(ready))
    await asyncio.wait_for(ready.wait(), TIMEOUT)
    smtp = next(item.address for item in gateway.listeners if item.protocol == "smtp")
    try:
        yield gateway, int(smtp.rsplit(":", 1)[1])
    finally:
        gateway.stop()
        assert await asyncio.wait_for(task, TIMEOUT) == 0


def rss() -> int:
    """This process's resident set size now, in bytes."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * 4096


class RssPeak:
    """Samples RSS every 5 ms in the background; `growth` is the peak over the start."""

    def __init__(self) -> None:
        self.start = self.peak = rss()
        self._task = asyncio.create_task(self._sample())

    async def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, rss())
            await asyncio.sleep(0.005)

    def stop(self) -> int:
        self._task.cancel()
        self.peak = max(self.peak, rss())
        return self.peak - self.start


async def answer(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.readline(), TIMEOUT)


async def command(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: bytes) -> bytes:
    writer.write(line + b"\r\n")
    return await answer(reader)


async def test_a_data_line_without_end_is_answered_500_at_once_and_not_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    inbox = Inbox()
    caplog.set_level(logging.WARNING, "gateway.smtp")
    async with running(inbox) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert (await answer(reader)).startswith(b"220")
        for line in (b"HELO client.test", b"MAIL FROM:<a@customer.test>"):
            assert (await command(reader, writer, line)).startswith(b"250")
        assert (await command(reader, writer, b"RCPT TO:<support@example.com>")).startswith(b"250")
        assert (await command(reader, writer, b"DATA")).startswith(b"354")
        writer.write(b"Subject: long\r\n\r\n" + CHUNK)
        # The answer comes while the line is still open: nothing past the limit was waited for.
        assert await answer(reader) == b"500 5.5.2 Line too long (RFC 5321 4.5.3.1.6)\r\n"
        peak = RssPeak()
        for _ in range(50 * 1024 * 1024 // len(CHUNK)):  # 50 MiB more of the same line
            writer.write(CHUNK)
            await writer.drain()
        writer.write(b"\r\n.\r\n")
        growth = peak.stop()
        # The session goes on: the next message on the same connection is delivered.
        assert (await command(reader, writer, b"NOOP")).startswith(b"250")
        assert (await command(reader, writer, b"MAIL FROM:<a@customer.test>")).startswith(b"250")
        assert (await command(reader, writer, b"RCPT TO:<support@example.com>")).startswith(b"250")
        assert (await command(reader, writer, b"DATA")).startswith(b"354")
        assert (await command(reader, writer, wire(message()) + b".")).startswith(b"250")
        assert (await command(reader, writer, b"QUIT")).startswith(b"221")
        writer.close()
    assert growth < 8 * 1024 * 1024, f"RSS grew {growth} bytes for a 50 MiB line"
    assert [seen["subject"] for seen in inbox.seen] == ["Printer on fire"]
    assert caplog.text.count("DATA line over 1001 octets from ('127.0.0.1'") == 1


async def test_a_message_over_the_size_limit_is_one_552_after_the_dot(
    caplog: pytest.LogCaptureFixture,
) -> None:
    inbox = Inbox()
    body = b"Subject: big\r\n\r\n" + b"y" * 900 + b"\r\n"
    async with running(inbox, DATA_SIZE_LIMIT=2000) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await answer(reader)
        for line in (b"HELO c", b"MAIL FROM:<a@customer.test>", b"RCPT TO:<support@example.com>"):
            await command(reader, writer, line)
        assert (await command(reader, writer, b"DATA")).startswith(b"354")
        writer.write(body * 4 + b".\r\n")  # over the size limit, every line within 1,000
        with caplog.at_level(logging.WARNING, "gateway.smtp"):
            assert (await answer(reader)).startswith(b"552 5.3.4")
        assert (await command(reader, writer, b"QUIT")).startswith(b"221")
        writer.close()
    assert inbox.seen == []
    assert "DATA from ('127.0.0.1'" in caplog.text
    assert "refused: 552 5.3.4 Message too big for this system" in caplog.text


def banner(port: int) -> bytes:
    with smtplib.SMTP(timeout=TIMEOUT) as client:
        code, welcome = client.connect("127.0.0.1", port)
        assert code == 220
        return welcome


async def test_the_banner_is_neutral_by_default_and_can_be_set() -> None:
    async with running(Inbox(), HOSTNAME="mx.example.com") as (_, port):
        assert await asyncio.to_thread(banner, port) == b"mx.example.com ESMTP"
    async with running(Inbox(), HOSTNAME="mx.example.com", BANNER="ESMTP ready") as (_, port):
        assert await asyncio.to_thread(banner, port) == b"mx.example.com ESMTP ready"


def test_a_banner_must_be_one_printable_line() -> None:
    assert SMTPAdapter.check_options({"BANNER": "ESMTP\r\n250 hi"}) == [
        'OPTIONS["BANNER"] must be a non-empty printable str of at most 200 characters,'
        " got 'ESMTP\\r\\n250 hi'"
    ]


def open_connections(gateway: Gateway) -> str:
    return gateway.health()["adapters"]["smtp"]["detail"].split(",")[0]


async def until_closed(gateway: Gateway) -> str:
    for _ in range(200):
        if open_connections(gateway) == "0 connection(s)":
            break
        await asyncio.sleep(0.01)
    return open_connections(gateway)


async def test_open_connections_return_to_zero_however_clients_leave() -> None:
    async with running(Inbox(), TIMEOUT=0.3) as (gateway, port):
        clients = [await asyncio.open_connection("127.0.0.1", port) for _ in range(30)]
        for reader, _ in clients:
            await answer(reader)
        assert open_connections(gateway) == "30 connection(s)"
        for n, (reader, writer) in enumerate(clients):
            if n % 3 == 0:  # QUIT
                assert (await command(reader, writer, b"QUIT")).startswith(b"221")
            elif n % 3 == 1:  # the client hangs up without a word
                writer.close()
            # else: silent until the idle timeout closes it
        assert await until_closed(gateway) == "0 connection(s)"
        for _, writer in clients:
            writer.close()


def case_variants(address: str, count: int) -> list[str]:
    """`count` different spellings of `address`, each letter upper or lower by a bit of n."""
    letters = [i for i, char in enumerate(address) if char.isalpha()]
    variants = []
    for n in range(count):
        chars = list(address)
        for bit, i in enumerate(letters):
            chars[i] = chars[i].upper() if n >> bit & 1 else chars[i].lower()
        variants.append("".join(chars))
    return variants


async def test_case_variants_of_one_recipient_run_the_application_once() -> None:
    inbox = Inbox()
    recipients = case_variants("support@example.com", 1000)
    assert len(set(recipients)) == 1000
    async with smtp_gateway(make_app(inbox)) as port:
        assert await asend(port, wire(message()), recipients) == {}
    [seen] = inbox.seen
    assert seen["recipient"] == "support@example.com"  # the first spelling
    assert seen["scope"]["recipients"] == ["support@example.com"]
    assert await InboundEmail.objects.acount() == 1


async def test_variants_do_not_count_against_max_recipients() -> None:
    inbox = Inbox()
    recipients = [*case_variants("support@example.com", 5), "unit-1@devices.example.com"]
    async with smtp_gateway(make_app(inbox), MAX_RECIPIENTS=2) as port:
        assert await asend(port, wire(message()), recipients) == {}
    assert sorted(seen["recipient"] for seen in inbox.seen) == [
        "support@example.com",
        "unit-1@devices.example.com",
    ]
