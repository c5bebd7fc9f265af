"""The SMTP session under random command sequences: a valid reply to every line, then good mail.

Each example opens a session on one running SMTP adapter and sends random lines: the commands
of RFC 5321 with random arguments, in random order, and random bytes (without CR or LF, so that
every line is one command). Every line but those inside DATA gets exactly one reply, each of
its lines a three-digit code and a space or a hyphen; the session ends with QUIT or when the
server hangs up after a 221 or 421. After every example a well-formed mail still goes through
to the application.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.email.support import Inbox, asend, make_app, message, smtp_gateway, wire

pytestmark = pytest.mark.django_db(transaction=True)

REPLY = re.compile(rb"^[2-5]\d\d([ -])")
ARGUMENT = st.one_of(
    st.sampled_from(
        ["", "FROM:<a@customer.test>", "TO:<support@example.com>", "FROM:<>", "TO:<>",
         "TO:<x@elsewhere.test>", "FROM:<a@b> SIZE=99999999999", "FROM:<a@b> BODY=8BITMIME",
         "PLAIN AGFAYgBj", "LOGIN", "mx.client.test", "TO:<support@example.com> NOTIFY=NEVER"]
    ),
    st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=40),
)  # fmt: skip
VERB = st.sampled_from(
    ["HELO", "EHLO", "MAIL", "RCPT", "DATA", "RSET", "NOOP", "VRFY", "EXPN", "HELP",
     "AUTH", "STARTTLS", "BDAT", "TURN", "mail", "rcpt"]
)  # fmt: skip
COMMAND = st.builds(lambda verb, arg: f"{verb} {arg}".strip().encode(), VERB, ARGUMENT)
JUNK = st.binary(max_size=120).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
LINES = st.lists(st.one_of(COMMAND, COMMAND, JUNK, st.just(b".")), max_size=15)


async def reply(reader: asyncio.StreamReader) -> int | None:
    """One reply's code, every line of it checked; None when the server hung up."""
    while True:
        line = await asyncio.wait_for(reader.readline(), 10)
        if not line:
            return None
        match = REPLY.match(line)
        assert match, f"not an SMTP reply: {line!r}"
        if match.group(1) == b" ":
            return int(line[:3])


async def session(port: int, lines: list[bytes]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        assert await reply(reader) == 220
        in_data = False
        for line in [*lines, b"QUIT"]:
            writer.write(line + b"\r\n")
            if in_data and line != b".":
                continue
            code = await reply(reader)
            if code is None or code in (221, 421):
                return
            in_data = code == 354
    finally:
        writer.close()


async def test_random_sessions_get_replies_and_good_mail_still_arrives() -> None:
    inbox = Inbox()
    async with smtp_gateway(make_app(inbox)) as port:
        loop = asyncio.get_running_loop()
        count = 0

        async def example(lines: list[bytes]) -> None:
            nonlocal count
            await session(port, lines)
            count += 1
            mail = message(subject=f"after example {count}")
            assert await asend(port, wire(mail), ["support@example.com"]) == {}
            assert inbox.seen[-1]["subject"] == f"after example {count}"

        @settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(LINES)
        def fuzz(lines: Any) -> None:
            asyncio.run_coroutine_threadsafe(example(lines), loop).result()

        await asyncio.to_thread(fuzz)
        assert count >= settings().max_examples // 2
