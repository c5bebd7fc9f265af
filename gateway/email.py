"""Email: the ``email`` scope and its events, and the auto-reply guard.

Reading what arrived lives in `gateway.email_parse` (bytes to message objects) and
`gateway.email_read` (decoded headers, bodies, attachments); the helpers docs/email.md names
(`subject`, `text_body`, `parse_message`, ...) are importable from here too. Importing this
module imports no protocol library and reads no settings.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from email.message import Message
from typing import Any, Final

from gateway.email_parse import parse_message
from gateway.email_read import (
    Attachment,
    attachments,
    header_text,
    html_body,
    in_reply_to,
    message_id,
    references,
    sender_address,
    subject,
    text_body,
)
from gateway.types import EmailRejectEvent, EmailScope, EmailSendEvent

__all__ = [
    "Attachment",
    "ReplyRateLimiter",
    "attachments",
    "auto_reply_refusal",
    "build_email_scope",
    "canonical_address",
    "header_text",
    "html_body",
    "in_reply_to",
    "make_reject_event",
    "make_reply_event",
    "message_id",
    "parse_message",
    "references",
    "reply_limiter",
    "send_mail_event",
    "sender_address",
    "subject",
    "text_body",
    "validate_send_event",
]

logger = logging.getLogger("gateway.email")

SPEC_VERSION: Final = "1.0"
DEFAULT_REJECT_CODE: Final = 550
DEFAULT_REJECT_REASON: Final = "5.7.1 Message rejected"

_BULK_PRECEDENCE: Final = frozenset({"bulk", "junk", "list"})


def canonical_address(address: str) -> str:
    """The form two spellings of one recipient share: the whole address in lower case.

    `routers.email.address` patterns match any case, so ``Support@Example.COM`` and
    ``support@example.com`` reach the same consumer: the intakes run it once for both.
    """
    return address.lower()


# --- scopes and events -----------------------------------------------------------------------


def build_email_scope(
    *,
    source: str,
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
    if "List-Id" in message:  # by name only: the value is never parsed
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
