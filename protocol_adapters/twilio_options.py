"""The Twilio SMS adapter's OPTIONS, declared once (see docs/sms.md)."""

from __future__ import annotations

import dataclasses
from typing import Any, Final
from urllib.parse import urlsplit

from gateway.options import (
    Option,
    OptionSet,
    is_number,
    positive_int,
    positive_number,
    retry_option,
)

__all__ = ["MAX_BODY_CHARS", "TWILIO_OPTIONS"]

MAX_BODY_CHARS = 1600


def _path(value: object) -> str | None:
    ok = isinstance(value, str) and value.startswith("/")
    return None if ok else "a path starting with '/'"


def _deadline(value: object) -> str | None:
    ok = is_number(value) and 0 < value < 15  # type: ignore[operator]
    return None if ok else "seconds between 0 and 15 (Twilio's)"


def _http_url(value: object) -> str | None:
    ok = value is None or urlsplit(str(value)).scheme in ("http", "https")
    return None if ok else "an http(s) URL"


def _text(value: object) -> str | None:
    return None if value is None or isinstance(value, str) else "a str or None"


def _flag(value: object) -> str | None:
    return None if isinstance(value, bool) else "True or False"


def _into(key: str) -> Any:
    return lambda value: {key: value}


TWILIO_OPTIONS: Final = OptionSet(
    Option("WEBHOOK_PATH", "/sms/twilio/", _path),
    Option("STATUS_PATH", "/sms/twilio/status/", _path),
    Option("PUBLIC_URL", None, _http_url),
    Option("TRUST_FORWARDED_HEADERS", False, _flag),
    Option("ACCOUNT_SID", None, _text),
    # Unset, every webhook is refused (403) and `check --deploy` says so (gateway.W104).
    Option("AUTH_TOKEN", None, _text),
    Option("FROM", None, _text),
    Option("MESSAGING_SERVICE_SID", None, _text),
    Option("DEADLINE", 10.0, _deadline),
    Option("MAX_IN_FLIGHT", 100, positive_int),
    dataclasses.replace(
        retry_option("RETRY", attempts=1, initial=0.1, maximum=30.0),
        legacy=(("ATTEMPTS", _into("ATTEMPTS")),),
    ),
    Option("STORE", None),
    Option("HELP_TEXT", "Reply STOP to unsubscribe.", _text),
    Option("API_BASE_URL", None, _http_url),
    dataclasses.replace(
        retry_option("SEND_RETRY", attempts=3, initial=0.5, maximum=5.0),
        legacy=(
            ("SEND_ATTEMPTS", _into("ATTEMPTS")),
            ("SEND_BACKOFF", _into("INITIAL_BACKOFF")),
            ("SEND_MAX_BACKOFF", _into("MAX_BACKOFF")),
        ),
    ),
    Option("SEND_TIMEOUT", 10.0, positive_number),
)
"""Every OPTIONS key of `TwilioSmsAdapter`, with its default and check (docs/sms.md)."""
