"""Twilio's webhook form as the gateway reads and answers it: the ``sms`` scope, TwiML."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from twilio.twiml.messaging_response import MessagingResponse

from gateway.sms import build_sms_scope
from gateway.types import SmsMedia, SmsScope

__all__ = ["MAX_MEDIA", "MissingFields", "inbound_scope", "twiml"]

MAX_MEDIA = 100
# Fields that become scope keys; every other field is kept in scope["extra"].
_SCOPE_FIELDS = frozenset({"MessageSid", "From", "To", "Body", "NumMedia"})


def twiml(replies: Sequence[str]) -> bytes:
    """A TwiML ``<Response>`` with one ``<Message>`` per reply (empty for none)."""
    response = MessagingResponse()
    for body in replies:
        response.message(body)
    return str(response).encode()


class MissingFields(ValueError):
    """The webhook form lacks required fields."""


def inbound_scope(
    form: Mapping[str, str], adapter: str, state: Mapping[str, Any] | None = None
) -> SmsScope:
    """The ``sms`` scope for a Twilio webhook form; raises MissingFields."""
    missing = [name for name in ("MessageSid", "From", "To") if not form.get(name)]
    if missing:
        raise MissingFields(f"missing {', '.join(missing)}")
    media = _media(form)
    consumed = _SCOPE_FIELDS | {f"MediaUrl{i}" for i in range(len(media))}
    consumed |= {f"MediaContentType{i}" for i in range(len(media))}
    return build_sms_scope(
        provider="twilio",
        adapter=adapter,
        from_=form["From"],
        to=form["To"],
        message_id=form["MessageSid"],
        media=media,
        country=form.get("FromCountry") or None,
        extra={key: value for key, value in form.items() if key not in consumed},
        state=state,
    )


def _media(form: Mapping[str, str]) -> list[SmsMedia]:
    count = form.get("NumMedia", "0")
    total = min(int(count), MAX_MEDIA) if count.isdigit() else 0
    return [
        {"url": form[f"MediaUrl{i}"], "content_type": form.get(f"MediaContentType{i}", "")}
        for i in range(total)
        if form.get(f"MediaUrl{i}")
    ]
