"""Vonage SMS: signed inbound-message webhooks and delivery receipts in, SMS API out.

Vonage's SMS API calls the inbound webhook with GET, POST (form) or POST-JSON, whichever the
dashboard says, with ``msisdn``, ``to``, ``messageId``, ``text``, and, for a message sent in
parts, ``concat-ref`` / ``concat-total`` / ``concat-part`` on each part. With signed webhooks on,
every request carries ``sig``, ``timestamp`` and ``nonce``; this module checks them with the
``vonage`` SDK's ``Auth.check_signature`` (HMAC with the account's signature secret). The
Messages API's webhooks (JSON, ``message_uuid``) come with a JWT instead, checked with the
SDK's ``verify_signature`` (HS256, the same secret) and its ``payload_hash`` claim. Vonage
wants a 200 or 204 quickly and retries otherwise; a retried delivery is dropped by message id.
Vonage has no reply format in the answer: replies go out through the SMS API afterwards.
This is the only module that imports ``vonage``. See docs/sms.md.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
import jwt
from vonage import Auth
from vonage_jwt import VonageVerifyJwtError, verify_signature

from gateway.exceptions import SmsSendError
from gateway.options import Option, OptionSet, one_of, positive_number
from gateway.sms import SentMessage, SmsStore
from gateway.sms_rest import TransientSendError
from gateway.sms_webhook import (
    InboundSms,
    Malformed,
    SmsWebhookAdapter,
    StatusUpdate,
    WebhookRequest,
    webhook_options,
)
from gateway.sms_wire import international
from protocol_adapters.sms_httpx import HttpxSmsSender

__all__ = ["VONAGE_OPTIONS", "VonageSender", "VonageSmsAdapter"]

logger = logging.getLogger("gateway.sms")

DEFAULT_API = "https://rest.nexmo.com"
# Fields that become scope keys; every other field is kept in scope["extra"].
_SCOPE_FIELDS = frozenset({"msisdn", "to", "messageId", "text", "sig"})
# Delivery-receipt statuses in the store's words; "unknown" moves nothing.
_STATUSES: Final = {
    "accepted": "accepted",
    "buffered": "sending",
    "delivered": "delivered",
    "expired": "undelivered",
    "failed": "failed",
    "rejected": "failed",
}


# Messages API statuses in the store's words.
_MESSAGES_STATUSES: Final = {
    "submitted": "sent",
    "rejected": "failed",
    "undeliverable": "undelivered",
}


VONAGE_OPTIONS: Final = OptionSet(
    # SIGNATURE_SECRET unset: every webhook is refused (403); `check --deploy` says so (W104).
    webhook_options(
        "vonage",
        deadline=3.0,
        max_deadline=30.0,
        account_keys=("API_KEY", "API_SECRET", "SIGNATURE_SECRET"),
    ),
    Option("SIGNATURE_METHOD", "sha256", one_of("md5", "sha1", "sha256", "sha512")),
    Option("CONCAT_TIMEOUT", 300.0, positive_number),
)
"""Every OPTIONS key of `VonageSmsAdapter`, with its default and check (docs/sms.md)."""


def raw_fields(request: WebhookRequest) -> dict[str, Any]:
    """The webhook's fields as signed: the query (GET), the form (POST) or the JSON object."""
    if not request.headers.get("content-type", "").startswith("application/json"):
        return dict(request.params())
    try:
        data = json.loads(request.body)
    except ValueError as exc:
        raise Malformed("the body is not JSON") from exc
    if not isinstance(data, dict):
        raise Malformed("the body is not a JSON object")
    return data


def params(request: WebhookRequest) -> dict[str, str]:
    """The webhook's fields as text."""
    return {str(key): str(value) for key, value in raw_fields(request).items()}


def _bearer(request: WebhookRequest) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def _messages_api_event(data: Mapping[str, Any]) -> InboundSms | StatusUpdate | None:
    """A Messages API webhook: an inbound SMS (joined already) or a message status."""
    if data.get("channel", "sms") != "sms":
        return None
    if data.get("status"):
        if not data.get("message_uuid"):
            raise Malformed("missing message_uuid")
        status = str(data["status"])
        error = data.get("error") if isinstance(data.get("error"), dict) else {}
        return StatusUpdate(
            str(data["message_uuid"]),
            _MESSAGES_STATUSES.get(status, status),
            str(error.get("title", "")) if error else "",
        )
    missing = [name for name in ("message_uuid", "from", "to") if not data.get(name)]
    if missing:
        raise Malformed(f"missing {', '.join(missing)}")
    extra: dict[str, str] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            extra.update({f"{key}.{inner}": str(item) for inner, item in value.items()})
        elif key not in ("message_uuid", "from", "to", "text"):
            extra[key] = str(value)
    return InboundSms(
        message_id=str(data["message_uuid"]),
        from_=international(str(data["from"])),
        to=international(str(data["to"])),
        body=str(data.get("text") or ""),
        extra=extra,
    )


@dataclass
class _Parts:
    """The parts of one multi-part message received so far."""

    total: int
    parts: dict[int, InboundSms] = field(default_factory=dict)
    timer: asyncio.TimerHandle | None = None


class VonageSmsAdapter(SmsWebhookAdapter):
    """Serves Vonage's inbound-SMS webhook and delivery receipts on the gateway's HTTP server."""

    provider = "vonage"
    OPTIONS = VONAGE_OPTIONS
    SECRETS = ("API_KEY", "SIGNATURE_SECRET")
    methods = frozenset({"GET", "POST"})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        values = self.values
        self.auth: Auth | None = None
        if values["API_KEY"] and values["SIGNATURE_SECRET"]:
            self.auth = Auth(
                api_key=values["API_KEY"],
                signature_secret=values["SIGNATURE_SECRET"],
                signature_method=values["SIGNATURE_METHOD"],
            )
        self._pending: dict[tuple[str, str], _Parts] = {}

    @classmethod
    def sms_sender(cls, options: Mapping[str, Any], store: SmsStore) -> VonageSender:
        """The outbound sender `gateway.sms.asend_sms` uses for this adapter's OPTIONS."""
        return VonageSender(VONAGE_OPTIONS.parse(options), store)

    def verify(self, request: WebhookRequest) -> str | None:
        token = _bearer(request)
        if token is not None:
            return self._verify_jwt(token, request.body)
        fields = raw_fields(request)
        if "sig" not in fields:
            return "unsigned request (no sig)"
        if not isinstance(fields["sig"], str):
            return "invalid sig (not a string)"
        assert self.auth is not None
        # check_signature pops "sig" and adds "timestamp" when missing: give it a copy.
        return None if self.auth.check_signature(dict(fields)) else "invalid sig"

    def _verify_jwt(self, token: str, body: bytes) -> str | None:
        """The Messages API's signed webhooks: an HS256 JWT whose payload_hash is the body's."""
        try:
            if not verify_signature(token, self.values["SIGNATURE_SECRET"]):
                return "invalid JWT signature"
        except VonageVerifyJwtError as exc:
            return f"invalid JWT ({exc})"
        claims = jwt.decode(token, options={"verify_signature": False})
        if claims.get("payload_hash") != hashlib.sha256(body).hexdigest():
            return "the JWT's payload_hash does not match the body"
        return None

    def parse(self, request: WebhookRequest) -> InboundSms | StatusUpdate | None:
        if _bearer(request) is not None:
            return _messages_api_event(raw_fields(request))
        fields = params(request)
        if request.path == self.values["STATUS_PATH"]:
            return self._receipt(fields)
        missing = [name for name in ("msisdn", "to", "messageId") if not fields.get(name)]
        if missing:
            raise Malformed(f"missing {', '.join(missing)}")
        return InboundSms(
            message_id=fields["messageId"],
            from_=international(fields["msisdn"]),
            to=international(fields["to"]),
            body=fields.get("text", ""),
            extra={key: value for key, value in fields.items() if key not in _SCOPE_FIELDS},
        )

    def _receipt(self, fields: Mapping[str, str]) -> StatusUpdate | None:
        if not fields.get("messageId") or not fields.get("status"):
            raise Malformed("missing messageId or status")
        status = _STATUSES.get(fields["status"])
        if status is None:
            return None
        error = fields.get("err-code", "0")
        return StatusUpdate(fields["messageId"], status, "" if error == "0" else f"Vonage {error}")

    # Multi-part messages: each part is its own webhook; the application gets the whole text.

    async def assemble(self, part: InboundSms) -> InboundSms | None:
        extra = part.extra
        if extra.get("concat") != "true" or not extra.get("concat-ref"):
            return part
        try:
            total, number = int(extra["concat-total"]), int(extra["concat-part"])
        except (KeyError, ValueError):
            logger.warning("SMS %s: bad concat fields; handled as one part.", part.message_id)
            return part
        key = (part.from_, extra["concat-ref"])
        pending = self._pending.setdefault(key, _Parts(total))
        pending.parts[number] = part
        if len(pending.parts) < pending.total:
            if pending.timer is None:
                loop = asyncio.get_running_loop()
                timeout = float(self.values["CONCAT_TIMEOUT"])
                pending.timer = loop.call_later(timeout, self._expire, key)
            return None
        return self._whole(key)

    def _whole(self, key: tuple[str, str]) -> InboundSms:
        pending = self._pending.pop(key)
        if pending.timer is not None:
            pending.timer.cancel()
        parts = [pending.parts[number] for number in sorted(pending.parts)]
        first = parts[0]
        extra = {k: v for k, v in first.extra.items() if k not in ("concat-part", "messageId")}
        extra["message-ids"] = ",".join(part.message_id for part in parts)
        if len(parts) < pending.total:
            extra["concat-missing"] = str(pending.total - len(parts))
        body = "".join(part.body for part in parts)
        return InboundSms(first.message_id, first.from_, first.to, body, extra=extra)

    async def stop(self, timeout: float) -> None:
        """Parts still waiting for the rest are handled as they are, before the pipeline stops."""
        waiting = [self._whole(key) for key in list(self._pending)]
        for message in waiting:
            logger.warning(
                "SMS %s: stopping; handled without its missing parts.", message.message_id
            )
        await asyncio.gather(*(self.deliver(message) for message in waiting))
        await super().stop(timeout)

    def _expire(self, key: tuple[str, str]) -> None:
        """Parts missing past CONCAT_TIMEOUT: the application gets what arrived, marked so."""
        message = self._whole(key)
        logger.warning(
            "SMS %s: %s of its parts never arrived; handled without them.",
            message.message_id,
            message.extra["concat-missing"],
        )
        self._spawn(self._deliver_late(message))

    async def _deliver_late(self, message: InboundSms) -> None:
        await self.deliver(message)  # no answer to carry replies: they go over the SMS API


class VonageSender(HttpxSmsSender):
    """Sends messages through Vonage's SMS API (``POST /sms/json``), with retries."""

    provider = "Vonage"
    credentials = ("API_KEY", "API_SECRET")

    def __init__(self, values: Mapping[str, Any], store: SmsStore) -> None:
        super().__init__(values, store)
        self.url = (values["API_BASE_URL"] or DEFAULT_API).rstrip("/") + "/sms/json"

    async def post(self, to: str, body: str, media_urls: Sequence[str], from_: str) -> SentMessage:
        if media_urls:
            raise SmsSendError("Vonage's SMS API sends text only; media_urls are not supported.")
        form = {
            "api_key": self.values["API_KEY"],
            "api_secret": self.values["API_SECRET"],
            "from": from_.lstrip("+"),
            "to": to.lstrip("+"),
            "text": body,
            "type": "text" if body.isascii() else "unicode",
        }
        if self.callback:
            form["callback"] = self.callback
        return self._sent(await self.request(self.url, data=form), to, from_)

    def _sent(self, response: httpx.Response, to: str, from_: str) -> SentMessage:
        try:
            first = response.json()["messages"][0]
            status = str(first["status"])
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise SmsSendError(
                f"Vonage answered HTTP {response.status_code} without messages",
                status=response.status_code,
            ) from exc
        if status == "1":  # throttled
            raise TransientSendError("Vonage throttled the message", 429)
        if status != "0":
            raise SmsSendError(
                f"Vonage refused the message: {first.get('error-text', status)}",
                status=response.status_code,
                code=int(status) if status.isdigit() else None,
            )
        return SentMessage(str(first["message-id"]), "accepted", to, from_)
