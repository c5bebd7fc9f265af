"""Outbound SMS through Twilio's REST API, with twilio's async HTTP client and retries."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

from gateway.exceptions import SmsOptedOut, SmsSendError
from gateway.pipeline import RetryPolicy
from gateway.sms import SentMessage, SmsRecord, SmsStore, split_channel
from protocol_adapters.twilio_options import MAX_BODY_CHARS, TWILIO_OPTIONS

__all__ = ["SentMessage", "TwilioSender"]

logger = logging.getLogger("gateway.sms")


class TwilioSender:
    """Sends messages through Twilio's REST API with twilio's async HTTP client, with retries."""

    def __init__(self, options: Mapping[str, Any], store: SmsStore) -> None:
        self.options = values = TWILIO_OPTIONS.parse(options)
        self.store = store
        self.from_ = values["FROM"]
        self.service_sid = values["MESSAGING_SERVICE_SID"]
        self.retry: RetryPolicy = values["SEND_RETRY"]
        self.timeout = float(values["SEND_TIMEOUT"])
        self._client: Client | None = None
        self._http: AsyncTwilioHttpClient | None = None

    @property
    def configured(self) -> bool:
        """True when ACCOUNT_SID and AUTH_TOKEN are set."""
        return bool(self.options["ACCOUNT_SID"] and self.options["AUTH_TOKEN"])

    def client(self) -> Client:
        """twilio's REST client, made on first use (inside the running loop)."""
        if not self.configured:
            raise SmsSendError("Cannot send SMS: ACCOUNT_SID and AUTH_TOKEN are not configured.")
        if self._client is None:
            self._http = AsyncTwilioHttpClient(timeout=self.timeout)
            self._client = Client(
                self.options["ACCOUNT_SID"],
                self.options["AUTH_TOKEN"],
                http_client=self._http,
            )
            base_url = self.options["API_BASE_URL"]
            if base_url:
                self._client.api.base_url = base_url
        return self._client

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._http is not None:
            await self._http.close()
        self._client = self._http = None

    async def send(
        self,
        to: str,
        body: str,
        *,
        media_urls: Sequence[str] = (),
        from_: str | None = None,
    ) -> SentMessage:
        """Send one message; raises SmsOptedOut, or SmsSendError once retries are spent."""
        self._check(to, body)
        if await self.store.is_opted_out(to):
            logger.info("SMS to %s not sent: the number opted out (STOP).", to)
            raise SmsOptedOut(f"{to} opted out of messages (STOP); nothing was sent.")
        params = self._params(to, body, media_urls, from_)
        message = await self._create(params)
        sent = SentMessage(str(message.sid), str(message.status), to, str(message.from_ or ""))
        await self._record(sent, params)
        return sent

    def _check(self, to: str, body: str) -> None:
        if not isinstance(to, str) or not to.strip():
            raise SmsSendError(f"Cannot send SMS: invalid recipient {to!r}.")
        if not isinstance(body, str) or len(body) > MAX_BODY_CHARS:
            raise SmsSendError(
                f"Cannot send SMS: the body must be text of at most {MAX_BODY_CHARS} characters."
            )

    def _params(
        self, to: str, body: str, media_urls: Sequence[str], from_: str | None
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"to": to, "body": body}
        sender = from_ or self.from_
        if sender:
            _, to_whatsapp = split_channel(to)
            number = split_channel(sender)[0]
            params["from_"] = f"whatsapp:{number}" if to_whatsapp else number
        elif self.service_sid:
            params["messaging_service_sid"] = self.service_sid
        else:
            raise SmsSendError("Cannot send SMS: set FROM or MESSAGING_SERVICE_SID, or pass from_.")
        if media_urls:
            params["media_url"] = list(media_urls)
        return params

    async def _create(self, params: dict[str, Any]) -> Any:
        client = self.client()
        for attempt in range(1, self.retry.attempts + 1):
            try:
                # twilio's async client drops its own timeout setting, so bound it here.
                async with asyncio.timeout(self.timeout):
                    return await client.messages.create_async(**params)
            except TwilioRestException as exc:
                if exc.status < 500 and exc.status != 429:
                    raise SmsSendError(
                        f"Twilio refused the message: {exc.msg}", status=exc.status, code=exc.code
                    ) from exc
                error: Exception = exc
            except (aiohttp.ClientError, TimeoutError) as exc:
                error = exc
            logger.warning("SMS to %s: attempt %d failed: %r", params["to"], attempt, error)
            if attempt < self.retry.attempts:
                await asyncio.sleep(self.retry.delay(attempt))
        raise SmsSendError(
            f"Twilio did not accept the message after {self.retry.attempts} attempts: {error!r}",
            status=getattr(error, "status", None),
        ) from error

    async def _record(self, sent: SentMessage, params: dict[str, Any]) -> None:
        record = SmsRecord(
            "outbound",
            sent.sid,
            sent.from_ or str(params.get("from_", "")),
            sent.to,
            str(params["body"]),
            sent.status,
            [{"url": url, "content_type": ""} for url in params.get("media_url", [])],
        )
        try:
            await self.store.record(record)
        except Exception:
            logger.exception("Could not store outbound SMS %s.", sent.sid)
