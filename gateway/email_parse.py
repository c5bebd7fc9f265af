"""Parsing what arrived: RFC 5322 bytes into ``email.message`` objects, cheaply.

`parse_message` gives an ``EmailMessage`` on ``policy.default``, `parse_headers` only the
header block on ``compat32``. Defects are recorded, never raised.
"""

from __future__ import annotations

import contextlib
import re
from contextvars import ContextVar
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser
from typing import Final

__all__ = ["parse_headers", "parse_message", "parsed_headers", "split_message"]


_PARSER: Final = BytesParser(policy=policy.default)
# compat32 leaves header values as strings: parsing a header block with it skips the
# header registry, which is most of the cost of parsing a simple message.
_HEADER_PARSER: Final = BytesParser(policy=policy.compat32)
# compat32's parsing into EmailMessage parts (`_parse_nested`).
_PLAIN_PARSER: Final = BytesParser(EmailMessage, policy=policy.compat32)
_HEADER_END = re.compile(rb"\n\r?\n")  # a leading "\n" lets the search skip ahead fast
# Only these need the feed parser's body handling; any other body is kept as one string.
_NESTED_TYPE = re.compile(rb"^content-type:\s*(multipart|message)/", re.IGNORECASE | re.MULTILINE)
# One header field as the feed parser reads it: a name of printable characters but ":", the
# value after the colon and its leading blanks, and its continuation lines (line breaks kept,
# the last one dropped). A block made only of such fields and a blank line is "clean".
_FIELD = r"([\x21-\x39\x3b-\x7e]+):[ \t]*([^\r\n]*(?:\r?\n[ \t][^\r\n]*)*)\r?\n"
_FIELDS = re.compile(_FIELD)
_CLEAN_BLOCK = re.compile(f"(?:{_FIELD})*\\r?\\n")


def split_message(raw: bytes) -> tuple[bytes, bytes] | None:
    """(header block with its blank line, body) at the first blank line, or None."""
    end = _HEADER_END.search(raw)
    if end is None:
        return None
    return raw[: end.end()], raw[end.end() :]


def _clean_fields(block: bytes) -> list[tuple[str, str]] | None:
    """The (name, value) fields of a clean header block, as the parser would store them.

    None for anything else (a unix From line, a line that is not a field, a bare CR, a
    continuation first): the parser then decides, and records its defects. Two regular
    expressions over the block cost a fraction of the feed parser's line-by-line work.
    """
    text = block.decode("ascii", "surrogateescape")  # as BytesParser decodes it
    if _CLEAN_BLOCK.fullmatch(text) is None:
        return None
    return _FIELDS.findall(text)


def _header_block(block: bytes) -> Message:
    """A header block (blank line included) parsed as compat32 would."""
    fields = _clean_fields(block)
    if fields is None:
        return _HEADER_PARSER.parsebytes(block, headersonly=True)
    headers = Message(policy=policy.compat32)
    for name, value in fields:
        headers.set_raw(name, value)
    headers.set_payload("")  # what the parser leaves after the blank line
    return headers


def parse_headers(raw: bytes) -> Message:
    """Parse only the header block of `raw`, cheaply (compat32: values are plain strings)."""
    parts = split_message(raw)
    if parts is None:
        return _HEADER_PARSER.parsebytes(raw, headersonly=True)
    return _header_block(parts[0])


# The header block of the message an adapter is running the application on, so that the
# consumer's `parse_message` does not parse it a second time. A context variable, not a
# scope or event key: scopes and events stay as docs/specs/email.md says (serialisable).
_known_headers: ContextVar[tuple[bytes, Message] | None] = ContextVar(
    "gateway_email_known_headers", default=None
)


class _KnownHeaders:
    def __init__(self, raw: bytes, headers: Message) -> None:
        self._known = (raw, headers)

    def __enter__(self) -> None:
        self._token = _known_headers.set(self._known)

    def __exit__(self, *exc_info: object) -> None:
        _known_headers.reset(self._token)


def parsed_headers(raw: bytes, headers: Message) -> contextlib.AbstractContextManager[None]:
    """Within this block, `parse_message(raw)` reuses `headers` (from `parse_headers(raw)`).

    Only for these very bytes (the same object): anything else is parsed as usual.
    """
    return _KnownHeaders(raw, headers)


def _reusable_headers(raw: bytes) -> Message | None:
    known = _known_headers.get()
    return known[1] if known is not None and known[0] is raw else None


def parse_message(raw: bytes) -> EmailMessage:
    """Parse RFC 5322 bytes with ``policy.default``; defects are recorded, never raised."""
    parts = split_message(raw)
    if parts is None:
        return _PARSER.parsebytes(raw)
    if _NESTED_TYPE.search(parts[0]):
        return _parse_nested(raw)
    headers = _reusable_headers(raw)
    if headers is None:
        headers = _header_block(parts[0])
    if headers.defects or headers.get_payload():
        return _PARSER.parsebytes(raw)  # not a clean header block: let the parser decide
    # A single-part body: the feed parser would split it into lines and join them again,
    # and parse Content-Type through the header registry; this builds the same message
    # (same raw headers, as the parser would set them) in a fraction of the time.
    message = EmailMessage(policy=policy.default)
    message.set_unixfrom(headers.get_unixfrom())  # type: ignore[arg-type]
    for name, value in headers.raw_items():
        message.set_raw(name, value)
    message.set_payload(parts[1].decode("ascii", "surrogateescape"))
    return message


# A Content-Type both policies read alike: type/subtype and parameters of plain tokens or
# quoted strings without escapes, encoded words or RFC 2231 continuations, and folding blanks.
_TOKEN = r"[A-Za-z0-9!#$%&'+.^_`|~-]+"
_SIMPLE_CONTENT_TYPE = re.compile(
    rf'\s*{_TOKEN}/{_TOKEN}\s*(?:;\s*{_TOKEN}=(?:"[^"\\\r\n]*"|{_TOKEN})\s*)*;?\s*'
)


def _parse_nested(raw: bytes) -> EmailMessage:
    """A multipart (or message/*) message: the parser's tree, built at compat32's cost.

    The parser's work per part is the same under both policies (they split header lines
    alike, ``header_source_parse``) but for reading Content-Type and its boundary, which
    ``policy.default`` does through the header registry: most of the cost of a small
    multipart message. The parser runs with compat32 but builds ``EmailMessage`` parts; when
    every part's Content-Type reads the same under both policies and no part has a defect,
    the parts are handed ``policy.default``, and the tree is the one the parser would have
    built with it. Anything else is parsed again by the parser with ``policy.default``.
    """
    tree = _PLAIN_PARSER.parsebytes(raw)
    if not _plain_tree(tree):
        return _PARSER.parsebytes(raw)
    for part in tree.walk():
        part.policy = policy.default
    return tree  # type: ignore[return-value]


def _plain_tree(part: Message) -> bool:
    if part.defects:
        return False
    for name, value in part.raw_items():  # raw strings (get_all may wrap 8-bit ones)
        if name.lower() != "content-type":
            continue
        if "=?" in value or _SIMPLE_CONTENT_TYPE.fullmatch(value) is None:
            return False
    if not part.is_multipart():
        return True
    children: list[Message] = part.get_payload()  # type: ignore[assignment]
    return all(_plain_tree(child) for child in children)
