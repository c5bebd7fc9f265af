"""Outbound SMS through a provider's REST API: the steps every provider shares.

A provider's sender (in its adapter module) subclasses `RestSmsSender` and only speaks its
API in `post`: one request, a `SentMessage` back, `TransientSendError` for what is worth
retrying (a 5xx, a 429, the network), `SmsSendError` for a refusal. The checks, the opt-out
store, the retries with backoff and recording the message are here, once.
"""

from __future__ import annotations

import abc
import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from gateway.exceptions import SmsOptedOut, SmsSendError
from gateway.pipeline import RetryPolicy
from gateway.sms import SentMessage, SmsRecord, SmsStore
from gateway.types import SmsMedia

__all__ = ["MAX_BODY_CHARS", "RestSmsSender", "TransientSendError"]

logger = logging.getLogger("gateway.sms")

MAX_BODY_CHARS = 1600


class TransientSendError(Exception):
    """The provider did not take the message this time (5xx, 429, network): try again."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RestSmsSender(abc.ABC):
    """Sends messages through a provider's REST API, with retries; see `post`."""

    provider: ClassVar[str]
    """The provider's name in messages and errors ("Vonage")."""
    credentials: ClassVar[tuple[str, ...]]
    """The OPTIONS keys the API needs ("API_KEY", "API_SECRET")."""

    def __init__(self, values: Mapping[str, Any], store: SmsStore) -> None:
        """`values` are the adapter's parsed OPTIONS (FROM, SEND_RETRY, SEND_TIMEOUT, ...)."""
        self.values = values
        self.store = store
        self.from_: str | None = values.get("FROM")
        self.retry: RetryPolicy = values["SEND_RETRY"]
        self.timeout = float(values["SEND_TIMEOUT"])
        # Where the provider posts delivery reports, when the public URL is known.
        public = values.get("PUBLIC_URL")
        self.callback: str | None = public.rstrip("/") + values["STATUS_PATH"] if public else None

    @property
    def configured(self) -> bool:
        """True when the REST credentials are set."""
        return all(self.values[key] for key in self.credentials)

    @property
    def unconfigured(self) -> str:
        """Why `configured` is False: "its credentials are not set (API_KEY is not configured)"."""
        verb = "is" if len(self.credentials) == 1 else "are"
        keys = " and ".join(self.credentials)
        return f"its credentials are not set ({keys} {verb} not configured)"

    def origin(self, from_: str | None) -> str:
        """The number to send from: `from_`, else FROM; raises SmsSendError without one."""
        sender = from_ or self.from_
        if not sender:
            raise SmsSendError("Cannot send SMS: set OPTIONS['FROM'] or pass from_.")
        return sender

    @abc.abstractmethod
    async def post(self, to: str, body: str, media_urls: Sequence[str], from_: str) -> SentMessage:
        """One request to the provider; raises TransientSendError or SmsSendError."""

    async def close(self) -> None:  # noqa: B027 (a sender without a client has nothing to close)
        """Release the HTTP client."""

    async def send(
        self, to: str, body: str, *, media_urls: Sequence[str] = (), from_: str | None = None
    ) -> SentMessage:
        """Send one message; raises SmsOptedOut, or SmsSendError once retries are spent."""
        if not isinstance(to, str) or not to.strip():
            raise SmsSendError(f"Cannot send SMS: invalid recipient {to!r}.")
        if not isinstance(body, str) or len(body) > MAX_BODY_CHARS:
            raise SmsSendError(
                f"Cannot send SMS: the body must be text of at most {MAX_BODY_CHARS} characters."
            )
        if not self.configured:
            raise SmsSendError(f"Cannot send SMS through {self.provider}: {self.unconfigured}.")
        sender = self.origin(from_)
        if await self.store.is_opted_out(to):
            logger.info("SMS to %s not sent: the number opted out (STOP).", to)
            raise SmsOptedOut(f"{to} opted out of messages (STOP); nothing was sent.")
        sent = await self._with_retries(to, body, media_urls, sender)
        await self._record(sent, body, media_urls)
        return sent

    async def _with_retries(
        self, to: str, body: str, media_urls: Sequence[str], from_: str
    ) -> SentMessage:
        error: Exception | None = None
        for attempt in range(1, self.retry.attempts + 1):
            try:
                async with asyncio.timeout(self.timeout):
                    return await self.post(to, body, media_urls, from_)
            except (TransientSendError, TimeoutError, OSError) as exc:
                error = exc
            logger.warning("SMS to %s: attempt %d failed: %r", to, attempt, error)
            if attempt < self.retry.attempts:
                await asyncio.sleep(self.retry.delay(attempt))
        raise SmsSendError(
            f"{self.provider} did not accept the message after {self.retry.attempts} "
            f"attempts: {error!r}",
            status=getattr(error, "status", None),
        ) from error

    async def _record(self, sent: SentMessage, body: str, media_urls: Sequence[str]) -> None:
        media: list[SmsMedia] = [{"url": url, "content_type": ""} for url in media_urls]
        record = SmsRecord("outbound", sent.sid, sent.from_, sent.to, body, sent.status, media)
        try:
            await self.store.record(record)
        except Exception:
            logger.exception("Could not store outbound SMS %s.", sent.sid)
