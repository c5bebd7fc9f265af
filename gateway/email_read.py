"""Reading a parsed message: decoded headers, addresses, Message-IDs, bodies, attachments.

Every function takes an ``email.message.Message`` (any policy) and never raises on malformed
mail: a header that cannot be parsed falls back to its raw text, a body in an unknown charset
is decoded as UTF-8 with replacement characters.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from email.header import decode_header, make_header
from email.message import EmailMessage, Message
from email.utils import getaddresses, parseaddr
from typing import Literal, cast

__all__ = [
    "Attachment",
    "attachments",
    "header_text",
    "html_body",
    "in_reply_to",
    "message_id",
    "references",
    "sender_address",
    "subject",
    "text_body",
]

_MSGID = re.compile(r"<([^<>\s]+)>")


def _raw_header(message: Message, name: str) -> str | None:
    # raw_items() skips the policy's header parsing, which can fail on hostile input.
    name = name.lower()
    for key, value in message.raw_items():
        if key.lower() == name:
            return str(value).encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return None


def header_text(message: Message, name: str) -> str | None:
    """A header's decoded text (RFC 2047 words decoded), None when absent."""
    try:
        value = message.get(name)
    except Exception:  # the email package's header parser has crashing corner cases
        return _raw_header(message, name)
    if value is None:
        return None
    text = str(value)
    # Undeclared 8-bit bytes come back as surrogates; show them as replacement characters.
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def subject(message: Message) -> str:
    """The decoded Subject, "" when there is none (RFC 2047 words decoded on any policy)."""
    text = header_text(message, "Subject") or ""
    if "=?" in text:
        # A malformed encoded word: keep the text as it came.
        with contextlib.suppress(Exception):
            text = str(make_header(decode_header(text)))
    return " ".join(text.split())


def sender_address(message: Message, header: str = "From") -> str:
    """The address (addr-spec) of the first From (or `header`) mailbox, "" when none."""
    text = header_text(message, header) or ""
    try:
        pairs = getaddresses([text])
    except Exception:
        pairs = [parseaddr(text)]
    return next((address for _, address in pairs if address), "")


def _message_ids(text: str | None) -> list[str]:
    return _MSGID.findall(text or "")


def message_id(message: Message) -> str | None:
    """The Message-ID without angle brackets, None when missing."""
    text = _raw_header(message, "Message-ID")
    if text is None:
        return None
    found = _message_ids(text)
    return found[0] if found else (text.strip() or None)


def in_reply_to(message: Message) -> str | None:
    """The first Message-ID of In-Reply-To, without angle brackets."""
    found = _message_ids(_raw_header(message, "In-Reply-To"))
    return found[0] if found else None


def references(message: Message) -> list[str]:
    """The Message-IDs of References, oldest first, without angle brackets."""
    return _message_ids(_raw_header(message, "References"))


def _part_text(part: Message) -> str:
    try:
        return str(cast(EmailMessage, part).get_content())
    except (LookupError, UnicodeError, ValueError, AssertionError, KeyError):
        # Unknown or wrong charset: keep what can be read rather than lose the body.
        payload = part.get_payload(decode=True)
        return payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""


def _body(message: Message, kind: Literal["plain", "html"]) -> str | None:
    try:
        part = cast(EmailMessage, message).get_body(preferencelist=(kind,))
    except Exception:
        return None
    if part is None or part.get_content_type() != f"text/{kind}":
        return None
    return _part_text(part)


def text_body(message: Message) -> str | None:
    """The text/plain body, decoded; None when the message has none."""
    return _body(message, "plain")


def html_body(message: Message) -> str | None:
    """The text/html body, decoded; None when the message has none."""
    return _body(message, "html")


@dataclass(frozen=True)
class Attachment:
    """One attached file: its name, MIME type and decoded content."""

    filename: str | None
    content_type: str
    content: bytes


def attachments(message: Message) -> list[Attachment]:
    """Every attachment, decoded from base64 / quoted-printable."""
    try:
        parts = list(cast(EmailMessage, message).iter_attachments())
    except Exception:
        return []
    found = []
    for part in parts:
        payload = part.get_payload(decode=True)
        content = payload if isinstance(payload, bytes) else b""
        try:
            filename = part.get_filename()
        except Exception:
            filename = None
        found.append(Attachment(filename, part.get_content_type(), content))
    return found
