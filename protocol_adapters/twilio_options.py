"""The Twilio SMS adapter's OPTIONS, declared once (see docs/sms.md)."""

from __future__ import annotations

from typing import Any, Final

from gateway.options import OptionSet
from gateway.sms_wire import webhook_options

__all__ = ["TWILIO_OPTIONS"]


def _into(key: str) -> Any:
    return lambda value: {key: value}


TWILIO_OPTIONS: Final[OptionSet] = webhook_options(
    "twilio",
    deadline=10.0,
    max_deadline=15.0,  # Twilio waits 15 seconds for the answer
    # AUTH_TOKEN unset: every webhook is refused (403) and `check --deploy` says so (W104).
    account_keys=("ACCOUNT_SID", "AUTH_TOKEN", "MESSAGING_SERVICE_SID"),
    # The flat keys of an earlier release, with a DeprecationWarning.
    legacy={
        "RETRY": (("ATTEMPTS", _into("ATTEMPTS")),),
        "SEND_RETRY": (
            ("SEND_ATTEMPTS", _into("ATTEMPTS")),
            ("SEND_BACKOFF", _into("INITIAL_BACKOFF")),
            ("SEND_MAX_BACKOFF", _into("MAX_BACKOFF")),
        ),
    },
)
"""Every OPTIONS key of `TwilioSmsAdapter`, with its default and check (docs/sms.md)."""
