"""Twilio's webhook forms as the gateway reads them, and TwiML, the answer it gives."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

from twilio.twiml.messaging_response import MessagingResponse

from gateway.sms_wire import InboundSms, Malformed, StatusUpdate
from gateway.types import SmsMedia

__all__ = ["MAX_MEDIA", "TWIML_TYPE", "inbound_sms", "status_update", "twiml"]

MAX_MEDIA = 100
TWIML_TYPE: Final = b"text/xml; charset=utf-8"
# Fields that become scope keys; every other field is kept in scope["extra"].
_SCOPE_FIELDS = frozenset({"MessageSid", "From", "To", "Body", "NumMedia"})


def twiml(replies: Sequence[str]) -> bytes:
    """A TwiML ``<Response>`` with one ``<Message>`` per reply (empty for none)."""
    response = MessagingResponse()
    for body in replies:
        response.message(body)
    return str(response).encode()


def inbound_sms(form: Mapping[str, str]) -> InboundSms:
    """The message of an incoming-message webhook; raises Malformed."""
    missing = [name for name in ("MessageSid", "From", "To") if not form.get(name)]
    if missing:
        raise Malformed(f"missing {', '.join(missing)}")
    media = _media(form)
    consumed = _SCOPE_FIELDS | {f"MediaUrl{i}" for i in range(len(media))}
    consumed |= {f"MediaContentType{i}" for i in range(len(media))}
    return InboundSms(
        message_id=form["MessageSid"],
        from_=form["From"],
        to=form["To"],
        body=form.get("Body", ""),
        media=media,
        country=form.get("FromCountry") or None,
        extra={key: value for key, value in form.items() if key not in consumed},
    )


def status_update(form: Mapping[str, str]) -> StatusUpdate:
    """The delivery report of a status callback (Twilio's statuses are the store's words)."""
    sid, status = form.get("MessageSid"), form.get("MessageStatus")
    if not sid or not status:
        raise Malformed("missing MessageSid or MessageStatus")
    error = form.get("ErrorCode", "")
    return StatusUpdate(sid, status, f"Twilio error {error}" if error else "")


def _media(form: Mapping[str, str]) -> list[SmsMedia]:
    count = form.get("NumMedia", "0")
    total = min(int(count), MAX_MEDIA) if count.isdigit() else 0
    return [
        {"url": form[f"MediaUrl{i}"], "content_type": form.get(f"MediaContentType{i}", "")}
        for i in range(total)
        if form.get(f"MediaUrl{i}")
    ]
