"""Telnyx SMS: ed25519-signed messaging webhooks in, the Messages API (telnyx SDK) out.

Telnyx posts one JSON event per webhook: ``message.received`` for an inbound message (the
parts of a long one already joined, ``parts`` says how many), ``message.sent`` and
``message.finalized`` for what we sent. Each is signed: ``telnyx-signature-ed25519`` over
``{telnyx-timestamp}|{body}`` with the account's key, checked here with the ``telnyx`` SDK's
``verify_webhook_signature`` (which also refuses a timestamp more than 5 minutes off). Telnyx
wants a 2xx and has no reply format in it: replies go out through the Messages API after the
answer. This is the only module that imports ``telnyx``. See docs/sms.md.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Final

import telnyx
from telnyx.lib.webhook_verification import WebhookVerificationError, verify_webhook_signature

from gateway.exceptions import SmsSendError
from gateway.sms import SentMessage, SmsStore
from gateway.sms_rest import RestSmsSender, TransientSendError
from gateway.sms_webhook import (
    InboundSms,
    Malformed,
    SmsWebhookAdapter,
    StatusUpdate,
    WebhookRequest,
    webhook_options,
)
from gateway.types import SmsMedia

__all__ = ["TELNYX_OPTIONS", "TelnyxSender", "TelnyxSmsAdapter"]

logger = logging.getLogger("gateway.sms")

STATUS_EVENTS = frozenset({"message.sent", "message.finalized"})
# Telnyx's statuses in the store's words; delivery_unconfirmed moves nothing past "sent".
_STATUSES: Final = {
    "sending_failed": "failed",
    "delivery_failed": "undelivered",
    "delivery_unconfirmed": "sent",
}
_EXTRA = ("type", "parts", "messaging_profile_id", "encoding", "received_at", "direction")


# PUBLIC_KEY unset: every webhook is refused (403); `check --deploy` says so (W104).
TELNYX_OPTIONS: Final = webhook_options(
    "telnyx",
    deadline=2.0,
    max_deadline=10.0,
    account_keys=("PUBLIC_KEY", "API_KEY", "MESSAGING_PROFILE_ID"),
)
"""Every OPTIONS key of `TelnyxSmsAdapter`, with its default and check (docs/sms.md)."""


class TelnyxSmsAdapter(SmsWebhookAdapter):
    """Serves Telnyx's messaging webhooks on the gateway's HTTP server."""

    provider = "telnyx"
    OPTIONS = TELNYX_OPTIONS
    SECRETS = ("PUBLIC_KEY",)

    @classmethod
    def sms_sender(cls, options: Mapping[str, Any], store: SmsStore) -> TelnyxSender:
        """The outbound sender `gateway.sms.asend_sms` uses for this adapter's OPTIONS."""
        return TelnyxSender(TELNYX_OPTIONS.parse(options), store)

    def verify(self, request: WebhookRequest) -> str | None:
        try:
            verify_webhook_signature(request.body, request.headers, self.values["PUBLIC_KEY"])
        except WebhookVerificationError as exc:
            return exc.message
        except UnicodeDecodeError as exc:
            raise Malformed("the body is not UTF-8") from exc
        return None

    def parse(self, request: WebhookRequest) -> InboundSms | StatusUpdate | None:
        event = _event(request.body)
        kind, payload = event.get("event_type"), event.get("payload")
        if not isinstance(payload, dict):
            raise Malformed("no data.payload object")
        if kind in STATUS_EVENTS:
            return _status(payload)
        if kind != "message.received":
            logger.info("Telnyx event %r ignored.", kind)
            return None
        sender, recipient = _number(payload.get("from")), _first_to(payload)
        if not payload.get("id") or not sender or not recipient:
            raise Malformed("missing payload id, from or to")
        extra = {key: str(payload[key]) for key in _EXTRA if payload.get(key) is not None}
        extra["event_id"] = str(event.get("id", ""))
        return InboundSms(
            message_id=str(payload["id"]),
            from_=sender,
            to=recipient,
            body=str(payload.get("text") or ""),
            media=_media(payload.get("media")),
            extra=extra,
        )


def _event(body: bytes) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise Malformed("the body is not JSON") from exc
    data = document.get("data") if isinstance(document, dict) else None
    if not isinstance(data, dict):
        raise Malformed("no data object")
    return data


def _number(party: object) -> str:
    return str(party.get("phone_number") or "") if isinstance(party, dict) else ""


def _first_to(payload: Mapping[str, Any]) -> str:
    to = payload.get("to")
    return _number(to[0]) if isinstance(to, list) and to else ""


def _status(payload: Mapping[str, Any]) -> StatusUpdate:
    to = payload.get("to")
    first = to[0] if isinstance(to, list) and to and isinstance(to[0], dict) else {}
    status = str(first.get("status") or "")
    if not payload.get("id") or not status:
        raise Malformed("missing payload id or to[0].status")
    errors = payload.get("errors") or []
    error = "; ".join(str(e.get("title", e)) for e in errors if isinstance(e, dict))
    return StatusUpdate(str(payload["id"]), _STATUSES.get(status, status), error)


def _media(items: object) -> list[SmsMedia]:
    if not isinstance(items, list):
        return []
    return [
        {"url": str(item["url"]), "content_type": str(item.get("content_type") or "")}
        for item in items
        if isinstance(item, dict) and item.get("url")
    ]


class TelnyxSender(RestSmsSender):
    """Sends messages through Telnyx's Messages API with the telnyx SDK's async client."""

    provider = "Telnyx"
    credentials = ("API_KEY",)

    def __init__(self, values: Mapping[str, Any], store: SmsStore) -> None:
        super().__init__(values, store)
        self._client: telnyx.AsyncTelnyx | None = None

    def client(self) -> telnyx.AsyncTelnyx:
        """telnyx's async client, made on first use; retries are ours (SEND_RETRY)."""
        if self._client is None:
            self._client = telnyx.AsyncTelnyx(
                api_key=self.values["API_KEY"],
                base_url=self.values["API_BASE_URL"],
                timeout=self.timeout,
                max_retries=0,
            )
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
        self._client = None

    async def post(self, to: str, body: str, media_urls: Sequence[str], from_: str) -> SentMessage:
        options: dict[str, Any] = {"to": to, "from_": from_, "text": body}
        if media_urls:
            options["media_urls"] = list(media_urls)
        if self.callback:
            options["webhook_url"] = self.callback
        if self.values["MESSAGING_PROFILE_ID"]:
            options["messaging_profile_id"] = self.values["MESSAGING_PROFILE_ID"]
        try:
            response = await self.client().messages.send(**options)
        except telnyx.APIStatusError as exc:
            if exc.status_code >= 500 or exc.status_code == 429:
                raise TransientSendError(f"HTTP {exc.status_code}", exc.status_code) from exc
            raise SmsSendError(
                f"Telnyx refused the message: {exc.message}", status=exc.status_code
            ) from exc
        except telnyx.APIConnectionError as exc:
            raise TransientSendError(repr(exc)) from exc
        data = response.data
        if data is None or not data.id:
            raise SmsSendError("Telnyx answered without a message id.")
        status = data.to[0].status if data.to and data.to[0].status else "queued"
        return SentMessage(str(data.id), str(status), to, from_)
