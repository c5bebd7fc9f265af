"""The Twilio SMS adapter's OPTIONS and their defaults (see docs/sms.md)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["DEFAULTS", "MAX_BODY_CHARS", "option"]

MAX_BODY_CHARS = 1600

DEFAULTS: Mapping[str, Any] = {
    "WEBHOOK_PATH": "/sms/twilio/",
    "STATUS_PATH": "/sms/twilio/status/",
    "PUBLIC_URL": None,
    "TRUST_FORWARDED_HEADERS": False,
    "ACCOUNT_SID": None,
    "AUTH_TOKEN": None,
    "FROM": None,
    "MESSAGING_SERVICE_SID": None,
    "DEADLINE": 10.0,
    "MAX_IN_FLIGHT": 100,
    "ATTEMPTS": 1,
    "STORE": None,
    "HELP_TEXT": "Reply STOP to unsubscribe.",
    "API_BASE_URL": None,
    "SEND_ATTEMPTS": 3,
    "SEND_BACKOFF": 0.5,
    "SEND_MAX_BACKOFF": 5.0,
    "SEND_TIMEOUT": 10.0,
}


def option(options: Mapping[str, Any], key: str) -> Any:
    """One OPTIONS value, or its default."""
    return options.get(key, DEFAULTS[key])
