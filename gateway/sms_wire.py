"""What an SMS provider's webhook adapter reads and returns, and the HTTP steps it shares.

`gateway.sms_webhook.SmsWebhookAdapter` reads each request into a `WebhookRequest`; the
provider's adapter turns it into an `InboundSms` or a `StatusUpdate` (or raises `Malformed`)
and answers with an `Answer`. `webhook_options` declares the OPTIONS keys every provider has.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

from gateway.intakes import intake_option
from gateway.options import (
    Option,
    OptionSet,
    flag,
    is_number,
    optional_http_url,
    optional_text,
    positive_int,
    positive_number,
    retry_option,
    url_path,
)
from gateway.sms import normalize_number, split_channel
from gateway.types import Receive, Scope, Send, SmsMedia

__all__ = [
    "MAX_REQUEST_BYTES",
    "Answer",
    "InboundSms",
    "Malformed",
    "StatusUpdate",
    "WebhookRequest",
    "international",
    "read_body",
    "read_request",
    "record_numbers",
    "reply_number",
    "respond",
    "webhook_options",
]

MAX_REQUEST_BYTES = 64 * 1024
TEXT: Final = b"text/plain; charset=utf-8"


# --- what a provider's adapter reads and returns --------------------------------------------


@dataclass(frozen=True)
class WebhookRequest:
    """One webhook request, read whole: what `verify` and `parse` look at."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    """Lower-case names, the first value of each."""
    body: bytes
    url: str
    """The URL the provider called (PUBLIC_URL or the forwarded headers when trusted)."""

    def params(self) -> dict[str, str]:
        """The query string of a GET, the form of a POST (read once: do not modify it)."""
        return self._params

    @cached_property
    def _params(self) -> dict[str, str]:
        text = self.query if self.method == "GET" else self.body.decode("utf-8", "replace")
        return dict(parse_qsl(text, keep_blank_values=True))


class Malformed(ValueError):
    """The request is not what the provider sends: answered 400."""


@dataclass(frozen=True)
class InboundSms:
    """One inbound message as the provider described it."""

    message_id: str
    from_: str
    to: str
    body: str
    media: list[SmsMedia] = field(default_factory=list)
    country: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StatusUpdate:
    """A delivery report of an outbound message, with the status in the store's words."""

    sid: str
    status: str
    error: str = ""


@dataclass(frozen=True)
class Answer:
    """The webhook's HTTP answer."""

    status: int
    body: bytes = b""
    content_type: bytes | None = None


# --- options every provider shares -----------------------------------------------------------


Legacy = tuple[tuple[str, Callable[[Any], Any]], ...]


def webhook_options(
    provider: str,
    *,
    deadline: float,
    max_deadline: float,
    account_keys: tuple[str, ...] = (),
    legacy: Mapping[str, Legacy] | None = None,
) -> OptionSet:
    """The keys every provider's adapter has, then `account_keys` (the provider's ids and
    secrets: text, unset by default); `legacy` gives a key its old flat keys (Option.legacy)."""
    old = legacy or {}
    return OptionSet(
        *(
            dataclasses.replace(option, legacy=old[option.key]) if option.key in old else option
            for option in _shared_options(provider, deadline, max_deadline)
        ),
        *(Option(key, None, optional_text) for key in account_keys),
    )


def _shared_options(provider: str, deadline: float, max_deadline: float) -> list[Option]:
    def check_deadline(value: object) -> str | None:
        ok = is_number(value) and 0 < value < max_deadline  # type: ignore[operator]
        return None if ok else f"seconds between 0 and {max_deadline:g}"

    return [
        Option("WEBHOOK_PATH", f"/sms/{provider}/", url_path),
        Option("STATUS_PATH", f"/sms/{provider}/status/", url_path),
        Option("PUBLIC_URL", None, optional_http_url),
        Option("TRUST_FORWARDED_HEADERS", False, flag),
        Option("FROM", None, optional_text),
        Option("DEADLINE", deadline, check_deadline),
        Option("MAX_IN_FLIGHT", 100, positive_int),
        # Reading, checking and storing a request before the application (gateway.intakes).
        intake_option(),
        retry_option("RETRY", attempts=1, initial=0.1, maximum=30.0),
        Option("STORE", None),
        Option("HELP_TEXT", "Reply STOP to unsubscribe.", optional_text),
        Option("API_BASE_URL", None, optional_http_url),
        retry_option("SEND_RETRY", attempts=3, initial=0.5, maximum=5.0),
        Option("SEND_TIMEOUT", 10.0, positive_number),
    ]


def international(number: str) -> str:
    """A number some providers write without its ``+`` (``447700900123``), with it; a short
    code or an alphanumeric sender id as it is."""
    return f"+{number}" if number.isdigit() and 8 <= len(number) <= 15 else number


def record_numbers(from_: str, to: str) -> tuple[str, str]:
    """An inbound message's numbers as the store keeps them: normalised, and both written
    ``whatsapp:...`` when the sender's is (as `reply_number` gives them back)."""
    sender, whatsapp = split_channel(from_)
    numbers = normalize_number(sender), normalize_number(split_channel(to)[0])
    return (f"whatsapp:{numbers[0]}", f"whatsapp:{numbers[1]}") if whatsapp else numbers


def reply_number(scope: Mapping[str, Any], key: str) -> str:
    """``scope[key]`` as a reply is addressed: ``whatsapp:+44...`` on a WhatsApp exchange."""
    number = str(scope[key])
    return f"whatsapp:{number}" if scope.get("whatsapp") else number


# --- HTTP ------------------------------------------------------------------------------------


def read_request(
    scope: Scope, body: bytes, public_url: str | None, trust_forwarded: bool
) -> WebhookRequest:
    """The request, with the URL the provider called: PUBLIC_URL, or what the proxy says."""
    headers = _headers(scope)
    host = headers.get("host") or "{}:{}".format(*scope.get("server") or ("localhost", 80))
    base = public_url or f"{scope.get('scheme', 'http')}://{host}"
    if trust_forwarded:
        parts = urlsplit(base)
        proto = headers.get("x-forwarded-proto", "").split(",")[0].strip() or parts.scheme
        host = headers.get("x-forwarded-host", "").split(",")[0].strip() or parts.netloc
        base = f"{proto}://{host}{parts.path}"
    raw_path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
    query = scope.get("query_string", b"").decode("latin-1")
    url = base.rstrip("/") + raw_path + (f"?{query}" if query else "")
    return WebhookRequest(scope["method"], scope["path"], query, headers, body, url)


def _headers(scope: Scope) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in scope.get("headers", []):
        headers.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
    return headers


async def read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None past MAX_REQUEST_BYTES."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks)
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > MAX_REQUEST_BYTES:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def respond(
    send: Send, answer: Answer, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    pairs = [*(headers or []), (b"content-length", str(len(answer.body)).encode())]
    if answer.content_type is not None:
        pairs.append((b"content-type", answer.content_type))
    await send({"type": "http.response.start", "status": answer.status, "headers": pairs})
    await send({"type": "http.response.body", "body": answer.body})
