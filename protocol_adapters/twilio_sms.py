"""Twilio SMS: signed webhooks in as ``sms`` scopes, TwiML replies, outbound messages over REST.

Twilio posts a form to the messaging webhook for each inbound message and to the status
callback for each step of an outbound one, signed with ``X-Twilio-Signature`` (checked here
with twilio's ``RequestValidator``, over the URL Twilio called and the form). The answer is
TwiML: each reply sent before the deadline is a ``<Message>`` in it; later ones go out through
the REST API (`twilio_rest`). The steps every provider shares (dedup, STOP/START/HELP, order
per sender, retries, the deadline, status updates) are `gateway.sms_webhook`'s. This module,
`twilio_form` and `twilio_rest` are the only ones that import ``twilio``. See docs/specs/sms.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twilio.request_validator import RequestValidator, get_signature_algorithm

from gateway.sms import SmsStore
from gateway.sms_webhook import Answer, InboundSms, SmsWebhookAdapter, StatusUpdate, WebhookRequest
from protocol_adapters.twilio_form import TWIML_TYPE, inbound_sms, status_update, twiml
from protocol_adapters.twilio_options import TWILIO_OPTIONS
from protocol_adapters.twilio_rest import TwilioSender

__all__ = ["TwilioSender", "TwilioSmsAdapter", "twiml"]

SIGNATURE = "x-twilio-signature"
SIGNATURE_SETTINGS = "x-twilio-webhooks-signature-settings"


class TwilioSmsAdapter(SmsWebhookAdapter):
    """Serves Twilio's messaging webhook and status callbacks on the gateway's HTTP server."""

    provider = "twilio"
    OPTIONS = TWILIO_OPTIONS
    SECRETS = ("AUTH_TOKEN",)
    replies_in_answer = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        token = self.values["AUTH_TOKEN"]
        self.validator = RequestValidator(token) if token else None

    @classmethod
    def sms_sender(cls, options: Mapping[str, Any], store: SmsStore) -> TwilioSender:
        """The outbound sender `gateway.sms.asend_sms` uses for this adapter's OPTIONS."""
        return TwilioSender(options, store)

    def verify(self, request: WebhookRequest) -> str | None:
        signature = request.headers.get(SIGNATURE)
        if not signature:
            return "invalid X-Twilio-Signature"
        assert self.validator is not None  # the base refuses requests without AUTH_TOKEN
        algorithm = get_signature_algorithm(request.headers.get(SIGNATURE_SETTINGS))
        valid = self.validator.validate(request.url, request.params(), signature, algorithm)
        return None if valid else "invalid X-Twilio-Signature"

    def parse(self, request: WebhookRequest) -> InboundSms | StatusUpdate:
        if request.path == self.values["STATUS_PATH"]:
            return status_update(request.params())
        return inbound_sms(request.params())

    def answer(self, replies: list[str], message: InboundSms | None) -> Answer:
        """TwiML, 200, for a message (its replies as ``<Message>``s); 204 for a status."""
        return Answer(204) if message is None else Answer(200, twiml(replies), TWIML_TYPE)
