"""Plivo SMS: V3-signed message webhooks and status callbacks in, Plivo XML out, Message API.

Plivo calls the application's Message URL (POST or GET) with ``From``, ``To``, ``Text``,
``Type``, ``MessageUUID`` and, for MMS, ``Media0``...; every request is signed with
``X-Plivo-Signature-V3`` over the URL, the sorted parameters and ``X-Plivo-Signature-V3-Nonce``,
checked here with the ``plivo`` SDK's ``validate_v3_signature``. Plivo joins the parts of a long
message before it calls (``Units`` says how many there were). The answer is Plivo XML: each
reply sent before the deadline is a ``<Message>`` in it; later ones go out through the Message
API. This is the only module that imports ``plivo``. See docs/sms.md.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

import httpx
from plivo import plivoxml
from plivo.utils.signature_v3 import validate_v3_signature

from gateway.exceptions import SmsSendError
from gateway.sms import SentMessage, SmsStore
from gateway.sms_webhook import (
    Answer,
    InboundSms,
    Malformed,
    SmsWebhookAdapter,
    StatusUpdate,
    WebhookRequest,
    webhook_options,
)
from gateway.sms_wire import international
from gateway.types import SmsMedia
from protocol_adapters.sms_httpx import HttpxSmsSender

__all__ = ["PLIVO_OPTIONS", "PlivoSender", "PlivoSmsAdapter", "plivo_xml"]

logger = logging.getLogger("gateway.sms")

DEFAULT_API = "https://api.plivo.com"
XML_TYPE = b"application/xml; charset=utf-8"
SIGNATURE = "x-plivo-signature-v3"
NONCE = "x-plivo-signature-v3-nonce"
_MEDIA = re.compile(r"Media(\d+)")
# Fields that become scope keys; every other field is kept in scope["extra"].
_SCOPE_FIELDS = frozenset({"From", "To", "Text", "MessageUUID"})
# Plivo's statuses in the store's words.
_STATUSES: Final = {"rejected": "failed", "read": "read"}


# AUTH_TOKEN unset: every webhook is refused (403); `check --deploy` says so (W104).
PLIVO_OPTIONS: Final = webhook_options(
    "plivo", deadline=5.0, max_deadline=15.0, account_keys=("AUTH_ID", "AUTH_TOKEN")
)
"""Every OPTIONS key of `PlivoSmsAdapter`, with its default and check (docs/sms.md)."""


def plivo_xml(replies: Sequence[tuple[str, str, str]]) -> bytes:
    """A Plivo XML ``<Response>`` with one ``<Message src dst>`` per (src, dst, text)."""
    response = plivoxml.ResponseElement()
    for src, dst, text in replies:
        response.add(plivoxml.MessageElement(text, src=src, dst=dst))
    xml: str = response.to_string(False)
    return xml.encode()


class PlivoSmsAdapter(SmsWebhookAdapter):
    """Serves Plivo's Message URL and status callbacks on the gateway's HTTP server."""

    provider = "plivo"
    OPTIONS = PLIVO_OPTIONS
    SECRETS = ("AUTH_TOKEN",)
    methods = frozenset({"GET", "POST"})
    replies_in_answer = True

    @classmethod
    def sms_sender(cls, options: Mapping[str, Any], store: SmsStore) -> PlivoSender:
        """The outbound sender `gateway.sms.asend_sms` uses for this adapter's OPTIONS."""
        return PlivoSender(PLIVO_OPTIONS.parse(options), store)

    def verify(self, request: WebhookRequest) -> str | None:
        signature, nonce = request.headers.get(SIGNATURE), request.headers.get(NONCE)
        if not signature or not nonce:
            return "unsigned request (no X-Plivo-Signature-V3 and nonce)"
        form = {} if request.method == "GET" else request.params()
        token = str(self.values["AUTH_TOKEN"])
        valid = validate_v3_signature(request.method, request.url, nonce, token, signature, form)
        return None if valid else "invalid X-Plivo-Signature-V3"

    def parse(self, request: WebhookRequest) -> InboundSms | StatusUpdate | None:
        fields = request.params()
        if request.path == self.values["STATUS_PATH"]:
            return _status(fields)
        missing = [name for name in ("From", "To", "MessageUUID") if not fields.get(name)]
        if missing:
            raise Malformed(f"missing {', '.join(missing)}")
        media = _media(fields)
        consumed = _SCOPE_FIELDS | {key for key in fields if _MEDIA.fullmatch(key)}
        return InboundSms(
            message_id=fields["MessageUUID"],
            from_=international(fields["From"]),
            to=international(fields["To"]),
            body=fields.get("Text", ""),
            media=media,
            extra={key: value for key, value in fields.items() if key not in consumed},
        )

    def answer(self, replies: list[str], message: InboundSms | None) -> Answer:
        """Plivo XML, 200: the replies as ``<Message>`` elements from our number to the sender."""
        if message is None:
            return Answer(200, plivo_xml([]), XML_TYPE)
        pairs = [(message.to.lstrip("+"), message.from_.lstrip("+"), text) for text in replies]
        return Answer(200, plivo_xml(pairs), XML_TYPE)


def _status(fields: Mapping[str, str]) -> StatusUpdate:
    if not fields.get("MessageUUID") or not fields.get("Status"):
        raise Malformed("missing MessageUUID or Status")
    status = _STATUSES.get(fields["Status"], fields["Status"])
    error = fields.get("ErrorCode", "")
    return StatusUpdate(fields["MessageUUID"], status, f"Plivo error {error}" if error else "")


def _media(fields: Mapping[str, str]) -> list[SmsMedia]:
    numbered = sorted((int(m.group(1)), key) for key in fields if (m := _MEDIA.fullmatch(key)))
    return [{"url": fields[key], "content_type": ""} for _, key in numbered if fields[key]]


class PlivoSender(HttpxSmsSender):
    """Sends messages through Plivo's Message API (``POST /v1/Account/{id}/Message/``)."""

    provider = "Plivo"
    credentials = ("AUTH_ID", "AUTH_TOKEN")

    def __init__(self, values: Mapping[str, Any], store: SmsStore) -> None:
        super().__init__(values, store)
        base = (values["API_BASE_URL"] or DEFAULT_API).rstrip("/")
        self.url = f"{base}/v1/Account/{values['AUTH_ID']}/Message/"

    def auth(self) -> tuple[str, str]:
        return (str(self.values["AUTH_ID"]), str(self.values["AUTH_TOKEN"]))

    async def post(self, to: str, body: str, media_urls: Sequence[str], from_: str) -> SentMessage:
        payload: dict[str, Any] = {"src": from_.lstrip("+"), "dst": to.lstrip("+"), "text": body}
        if media_urls:
            payload |= {"type": "mms", "media_urls": list(media_urls)}
        if self.callback:
            payload |= {"url": self.callback, "method": "POST"}
        return _sent(await self.request(self.url, json=payload), to, from_)


def _sent(response: httpx.Response, to: str, from_: str) -> SentMessage:
    status = response.status_code
    try:
        data = response.json()
    except ValueError:
        data = {}
    uuids = data.get("message_uuid") if isinstance(data, dict) else None
    if status >= 400 or not uuids:
        error = data.get("error", response.text) if isinstance(data, dict) else response.text
        raise SmsSendError(f"Plivo refused the message: {error}", status=status)
    return SentMessage(str(uuids[0]), "queued", to, from_)
