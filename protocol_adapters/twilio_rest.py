"""Outbound SMS through Twilio's REST API, with twilio's async HTTP client.

The checks, the opt-out store, the retries and recording the message are
`gateway.sms_rest.RestSmsSender`'s; this module only speaks Twilio's Messages API.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

from gateway.exceptions import SmsSendError
from gateway.sms import SentMessage, SmsStore, split_channel
from gateway.sms_rest import RestSmsSender, TransientSendError
from protocol_adapters.twilio_options import TWILIO_OPTIONS

__all__ = ["SentMessage", "TwilioSender"]


class TwilioSender(RestSmsSender):
    """Sends messages through Twilio's Messages API with twilio's async HTTP client."""

    provider = "Twilio"
    credentials = ("ACCOUNT_SID", "AUTH_TOKEN")

    def __init__(self, options: Mapping[str, Any], store: SmsStore) -> None:
        """`options` as set (TWILIO_OPTIONS reads them, old keys included)."""
        super().__init__(TWILIO_OPTIONS.parse(options), store)
        self.service_sid: str | None = self.values["MESSAGING_SERVICE_SID"]
        self._client: Client | None = None
        self._http: AsyncTwilioHttpClient | None = None

    def client(self) -> Client:
        """twilio's REST client, made on first use (inside the running loop)."""
        if self._client is None:
            self._http = AsyncTwilioHttpClient(timeout=self.timeout)
            self._client = Client(
                self.values["ACCOUNT_SID"], self.values["AUTH_TOKEN"], http_client=self._http
            )
            if self.values["API_BASE_URL"]:
                self._client.api.base_url = self.values["API_BASE_URL"]
        return self._client

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
        self._client = self._http = None

    def origin(self, from_: str | None) -> str:
        """`from_`, else FROM, else "" when MESSAGING_SERVICE_SID picks the number."""
        sender = from_ or self.from_
        if sender or self.service_sid:
            return sender or ""
        raise SmsSendError("Cannot send SMS: set FROM or MESSAGING_SERVICE_SID, or pass from_.")

    async def post(self, to: str, body: str, media_urls: Sequence[str], from_: str) -> SentMessage:
        params: dict[str, Any] = {"to": to, "body": body}
        if from_:  # a WhatsApp recipient is written to from our WhatsApp sender
            number = split_channel(from_)[0]
            params["from_"] = f"whatsapp:{number}" if split_channel(to)[1] else number
        else:
            params["messaging_service_sid"] = self.service_sid
        if media_urls:
            params["media_url"] = list(media_urls)
        try:
            message = await self.client().messages.create_async(**params)
        except TwilioRestException as exc:
            if exc.status >= 500 or exc.status == 429:
                raise TransientSendError(f"HTTP {exc.status}: {exc.msg}", exc.status) from exc
            raise SmsSendError(
                f"Twilio refused the message: {exc.msg}", status=exc.status, code=exc.code
            ) from exc
        except aiohttp.ClientError as exc:
            raise TransientSendError(repr(exc)) from exc
        sender = str(message.from_ or params.get("from_", ""))
        return SentMessage(str(message.sid), str(message.status), to, sender)
