"""Email helpers: parsing what arrived, building scopes and events, and the auto-reply guard.

Everything here works on ``email.message.EmailMessage`` objects parsed with
``email.policy.default`` and never raises on malformed mail: a header that cannot be parsed
falls back to its raw text, a body in an unknown charset is decoded as UTF-8 with
replacement characters. Importing this module imports no protocol library and reads no
settings.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from email import policy
from email.header import decode_header, make_header
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import getaddresses, parseaddr
from typing import Any, Final, Literal, cast

from gateway.types import EmailRejectEvent, EmailScope, EmailSendEvent

__all__ = [
    "Attachment",
    "ReplyRateLimiter",
    "attachments",
    "auto_reply_refusal",
    "header_text",
    "html_body",
    "in_reply_to",
    "make_reject_event",
    "make_reply_event",
    "make_scope",
    "message_id",
    "parse_headers",
    "parse_message",
    "parsed_headers",
    "references",
    "reply_limiter",
    "send_mail_event",
    "sender_address",
    "split_message",
    "subject",
    "text_body",
    "validate_send_event",
]

logger = logging.getLogger("gateway.email")

SPEC_VERSION: Final = "1.0"
DEFAULT_REJECT_CODE: Final = 550
DEFAULT_REJECT_REASON: Final = "5.7.1 Message rejected"
_MSGID = re.compile(r"<([^<>\s]+)>")
_BULK_PRECEDENCE: Final = frozenset({"bulk", "junk", "list"})


# --- parsing ---------------------------------------------------------------------------------


_PARSER: Final = BytesParser(policy=policy.default)
# compat32 leaves header values as strings: parsing a header block with it skips the
# header registry, which is most of the cost of parsing a simple message.
_HEADER_PARSER: Final = BytesParser(policy=policy.compat32)
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
    if parts is None or _NESTED_TYPE.search(parts[0]):
        return _PARSER.parsebytes(raw)
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


# --- scopes and events -----------------------------------------------------------------------


def make_scope(
    *,
    source: Literal["smtp", "imap"],
    adapter: str,
    sender: str,
    recipient: str,
    recipients: Sequence[str] | None = None,
    peer: tuple[str, int] | None = None,
    helo: str | None = None,
    auth_user: str | None = None,
    mailbox: str | None = None,
    uid: int | None = None,
    uidvalidity: int | None = None,
    message_id: str | None = None,
    attempt: int = 1,
    state: Mapping[str, Any] | None = None,
) -> EmailScope:
    """An ``email`` scope as docs/specs/email.md describes it."""
    scope: EmailScope = {
        "type": "email",
        "asgi": {"version": "3.0", "spec_version": SPEC_VERSION},
        "source": source,
        "adapter": adapter,
        "sender": sender,
        "recipient": recipient,
        "recipients": list(recipients) if recipients is not None else [recipient],
        "peer": peer,
        "helo": helo,
        "auth_user": auth_user,
        "mailbox": mailbox,
        "uid": uid,
        "uidvalidity": uidvalidity,
        "message_id": message_id,
        "attempt": attempt,
    }
    if state is not None:
        scope["state"] = dict(state)
    return scope


def make_reject_event(
    code: int = DEFAULT_REJECT_CODE, reason: str = DEFAULT_REJECT_REASON
) -> EmailRejectEvent:
    """An ``email.reject`` event; ValueError for a code outside 400-599 or a multi-line reason."""
    if isinstance(code, bool) or not isinstance(code, int) or not 400 <= code <= 599:
        raise ValueError(f"email.reject code must be an SMTP code 400-599, got {code!r}")
    if not isinstance(reason, str) or "\r" in reason or "\n" in reason or not reason.isascii():
        raise ValueError(f"email.reject reason must be one line of ASCII, got {reason!r}")
    return {"type": "email.reject", "code": code, "reason": reason}


def _reply_subject(original: str) -> str:
    return original if original.lower().startswith("re:") else f"Re: {original}".strip()


def make_reply_event(
    message: Message,
    scope: Mapping[str, Any],
    body: str,
    *,
    subject_line: str | None = None,
    html: str | None = None,
    from_email: str | None = None,
    cc: Sequence[str] = (),
    headers: Mapping[str, str] | None = None,
) -> EmailSendEvent:
    """An ``email.send`` replying to `message`: threading headers, Auto-Submitted, X-Loop."""
    to = (
        sender_address(message, "Reply-To")
        or sender_address(message)
        or str(scope.get("sender") or "")
    )
    parent = message_id(message)
    parent_of_parent = in_reply_to(message)
    thread = references(message) or ([parent_of_parent] if parent_of_parent else [])
    extra = {"Auto-Submitted": "auto-replied", "X-Loop": str(scope.get("recipient", ""))}
    if parent:
        extra["In-Reply-To"] = f"<{parent}>"
        extra["References"] = " ".join(f"<{item}>" for item in [*thread, parent] if item)
    extra.update(headers or {})
    return {
        "type": "email.send",
        "to": [to],
        "subject": subject_line if subject_line is not None else _reply_subject(subject(message)),
        "body": body,
        "html": html,
        "from_email": from_email or str(scope.get("recipient") or "") or None,
        "cc": list(cc),
        "headers": extra,
    }


def _string_list(event: Mapping[str, Any], key: str) -> list[str]:
    value = event.get(key, [])
    if isinstance(value, str) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"email.send {key!r} must be a list of addresses, got {value!r}")
    return list(value)


def validate_send_event(event: Mapping[str, Any]) -> EmailSendEvent:
    """Check an ``email.send`` event an application sent; ValueError when it is unusable."""
    for key in ("subject", "body"):
        if not isinstance(event.get(key), str):
            raise ValueError(f"email.send needs a str {key!r}")
    to = _string_list(event, "to")
    if not to:
        raise ValueError("email.send needs at least one address in 'to'")
    headers = event.get("headers") or {}
    for name, value in headers.items():
        if any(ch in f"{name}{value}" for ch in "\r\n"):
            raise ValueError(f"email.send header {name!r} contains a line break")
    return {
        "type": "email.send",
        "to": to,
        "subject": event["subject"],
        "body": event["body"],
        "html": event.get("html"),
        "from_email": event.get("from_email"),
        "cc": _string_list(event, "cc"),
        "bcc": _string_list(event, "bcc"),
        "reply_to": _string_list(event, "reply_to"),
        "headers": dict(headers),
    }


def send_mail_event(event: EmailSendEvent) -> int:
    """Send an ``email.send`` event through Django's email backend (sync); return 1 if sent."""
    from django.core.mail import EmailMultiAlternatives

    mail = EmailMultiAlternatives(
        subject=event["subject"],
        body=event["body"],
        from_email=event.get("from_email"),
        to=event["to"],
        cc=event.get("cc") or None,
        bcc=event.get("bcc") or None,
        reply_to=event.get("reply_to") or None,
        headers=event.get("headers") or None,
    )
    html = event.get("html")
    if html:
        mail.attach_alternative(html, "text/html")
    return mail.send()


# --- the auto-reply guard --------------------------------------------------------------------


def auto_reply_refusal(message: Message, *, sender: str, own_address: str) -> str | None:
    """Why an automatic reply to `message` must not be sent, or None when it may be.

    RFC 3834: never answer automatic mail (Auto-Submitted other than "no"), bulk or list
    mail (Precedence), bounces (null sender), or mail that carries our own X-Loop.
    """
    auto = (header_text(message, "Auto-Submitted") or "no").split(";")[0].strip().lower()
    if auto != "no":
        return f"Auto-Submitted: {auto}"
    precedence = (header_text(message, "Precedence") or "").strip().lower()
    if precedence in _BULK_PRECEDENCE:
        return f"Precedence: {precedence}"
    if not sender or sender == "<>":
        return "null sender"
    loops = [_raw_header_all(message, "X-Loop")]
    if own_address and any(own_address.lower() in text.lower() for text in loops if text):
        return f"X-Loop: {own_address}"
    if _raw_header(message, "List-Id") is not None:
        return "mailing list"
    return None


def _raw_header_all(message: Message, name: str) -> str:
    values = [str(v) for k, v in message.raw_items() if k.lower() == name.lower()]
    return " ".join(values)


class ReplyRateLimiter:
    """At most `limit` automatic replies per sender in any `period` seconds (thread-safe)."""

    def __init__(self, limit: int = 5, period: float = 3600.0, max_senders: int = 10000) -> None:
        self.limit = limit
        self.period = period
        self.max_senders = max_senders
        self._sent: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def allow(self, sender: str) -> bool:
        """Record a reply to `sender` and return True, or False when over the limit."""
        key = sender.lower()
        now = time.monotonic()
        with self._lock:
            times = self._sent.setdefault(key, deque())
            while times and now - times[0] >= self.period:
                times.popleft()
            if len(times) >= self.limit:
                return False
            times.append(now)
            self._forget_idle(now)
            return True

    def reset(self) -> None:
        """Forget every sender (tests use it)."""
        with self._lock:
            self._sent.clear()

    def _forget_idle(self, now: float) -> None:
        # Bounded memory: a flood of distinct senders must not grow the table forever.
        if len(self._sent) <= self.max_senders:
            return
        for key in [k for k, t in self._sent.items() if not t or now - t[-1] >= self.period]:
            del self._sent[key]
        while len(self._sent) > self.max_senders:
            del self._sent[next(iter(self._sent))]


reply_limiter = ReplyRateLimiter()
"""The process-wide limiter consumers use unless they set their own."""
