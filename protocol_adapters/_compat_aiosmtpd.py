"""What the SMTP adapter changes in aiosmtpd 1.4, in one place, with a version check.

aiosmtpd has no hook for reading the message after ``DATA``, so `SMTP` overrides its private
``smtp_DATA`` (and with it ``_reader``, ``_call_handler_hook`` and ``_set_post_data_state``);
`check_version` refuses an aiosmtpd outside the range it was written and tested for
(``aiosmtpd>=1.4,<1.5``), with a message naming what to install.

Why: aiosmtpd 1.4.6 keeps every fragment of a ``DATA`` line that has no CRLF until the line
ends, past the message size limit (a 50 MB line took 51 MB before its ``500``). Here a line
longer than RFC 5321's limit (4.5.3.1.6: 1,000 octets with CRLF, one more for a stuffed dot)
is answered ``500`` as soon as the limit is passed, and what follows is read and thrown away
up to the end of the data: the client reads that answer after its final dot, as it would any
answer to ``DATA``, and the session goes on. Nothing past the limit is kept.
"""

from __future__ import annotations

import asyncio
import logging
from importlib.metadata import version
from typing import Any, Final

from aiosmtpd.smtp import SMTP as _LibrarySMTP

from gateway.exceptions import ImproperlyConfiguredGateway

__all__ = ["ANSWER_LINE_TOO_LONG", "ANSWER_TOO_MUCH_DATA", "SMTP", "check_version"]

logger = logging.getLogger("gateway.smtp")

SUPPORTED: Final = ((1, 4), (1, 5))
"""The aiosmtpd versions the override was written for: at least the first, below the second."""
ANSWER_LINE_TOO_LONG: Final = "500 5.5.2 Line too long (RFC 5321 4.5.3.1.6)"
ANSWER_TOO_MUCH_DATA: Final = "552 5.3.4 Message too big for this system"
_END_OF_DATA: Final = b".\r\n"


def check_version() -> None:
    """Refuse an aiosmtpd whose private parts the override may no longer match."""
    installed = version("aiosmtpd")
    numbers = tuple(int(part) for part in installed.split(".")[:2] if part.isdigit())
    if not SUPPORTED[0] <= numbers < SUPPORTED[1]:
        raise ImproperlyConfiguredGateway(
            f"aiosmtpd {installed} is installed; the SMTP adapter needs aiosmtpd>=1.4,<1.5 "
            '(pip install "django-protocol-gateway[email]")'
        )


class _Data:
    """The lines of one message as they arrive, kept only while within both limits."""

    def __init__(self, size_limit: int | None) -> None:
        self.lines: list[bytes] = []
        self.size = 0
        self.size_limit = size_limit
        self.answer: str | None = None  # set once the message is refused
        self.answered = False  # the refusal was sent before the end of the data
        self.in_long_line = False  # the rest of a too-long line is still coming

    def add(self, line: bytes) -> None:
        if self.in_long_line:  # the tail of a line already refused: not a line of its own
            self.in_long_line = False
            return
        self.size += len(line)
        if self.answer is None and self.size_limit and self.size > self.size_limit:
            self.refuse(ANSWER_TOO_MUCH_DATA)
        if self.answer is None:
            # RFC 5321 4.5.2: a leading dot was doubled by the client.
            self.lines.append(line[1:] if line.startswith(b".") else line)

    def refuse(self, answer: str) -> None:
        self.answer = answer
        self.lines.clear()  # nothing of a refused message is kept


class SMTP(_LibrarySMTP):
    """aiosmtpd's SMTP protocol, reading the message after ``DATA`` within bounded memory."""

    async def smtp_DATA(self, arg: str | None) -> None:
        """``DATA``: the library's checks and answers, the message read by `_read_data`."""
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        envelope = self.envelope
        assert envelope is not None  # made in connection_made
        if not envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        data = await self._read_data()
        if data.answer is not None:
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            if not data.answered:
                logger.warning("DATA from %s refused: %s", self._peer(), data.answer)
                await self.push(data.answer)
            return
        envelope.content = envelope.original_content = b"".join(data.lines)
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()  # type: ignore[no-untyped-call]
        await self.push(status)

    async def _read_data(self) -> _Data:
        """Read up to the lone dot; a line past the limit is answered at once, then skipped."""
        data = _Data(self.data_size_limit)
        reader: asyncio.StreamReader = self._reader
        while self.transport is not None:
            try:
                line = await reader.readuntil(b"\r\n")
            except asyncio.LimitOverrunError as overrun:
                await reader.read(overrun.consumed)  # dropped: at most the reader's limit
                await self._too_long(data)
                continue
            if line == _END_OF_DATA and not data.in_long_line:
                break
            data.add(line)
        return data

    async def _too_long(self, data: _Data) -> None:
        data.in_long_line = True
        if data.answered:
            return
        logger.warning(
            "DATA line over %d octets from %s: answered 500, the rest is skipped",
            self.line_length_limit,
            self._peer(),
        )
        data.refuse(ANSWER_LINE_TOO_LONG)
        data.answered = True
        await self.push(ANSWER_LINE_TOO_LONG)

    def _peer(self) -> Any:
        return self.session.peer if self.session is not None else None
