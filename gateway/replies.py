"""Replies that cannot be sent: they fail the event, unless the consumer says otherwise.

A reply is anything a consumer sends out while it handles one event: an ``email.send``
(``reply()``, ``send_mail()``), an ``sms.reply`` / ``sms.send``, an ``mqtt.publish``. When it
cannot be sent, the event fails as if the consumer had raised: the adapter retries it, then
dead-letters it, and the unsent reply is written into the dead letter's error (a note on the
exception, so every traceback shows it). A consumer opts out with the class attribute
``on_reply_failure = "log"`` or the keyword ``on_failure="log"`` of one call: the failure is
then logged on ``gateway.replies`` and the event counts as handled. The event carries the
choice under `ON_FAILURE_KEY` when it is ``"log"``, so that dead-letter replay honours it too.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager
from typing import Any, Final, Literal, get_args

from gateway.exceptions import GatewayError

__all__ = [
    "ON_FAILURE_KEY",
    "ReplyFailure",
    "ReplyNotSent",
    "attach_unsent",
    "describe_reply",
    "failure_policy",
    "log_unsent",
    "logs_failure",
    "mark",
    "reply_failures",
]

logger = logging.getLogger("gateway.replies")

ReplyFailure = Literal["fail", "log"]
"""``"fail"``: an unsent reply fails the event (the default); ``"log"``: it is only logged."""

ON_FAILURE_KEY: Final = "on_failure"
"""The event key that carries ``"log"`` when the consumer opted out for that reply."""

MAX_DESCRIPTION: Final = 20_000  # characters of one reply kept in an error text


class ReplyNotSent(GatewayError):
    """Replies the application asked for could not be sent; `unsent` holds them, in order."""

    def __init__(self, unsent: Sequence[Mapping[str, Any]], reason: str) -> None:
        count = len(unsent)
        super().__init__(f"{count} repl{'y' if count == 1 else 'ies'} not sent: {reason}")
        self.unsent: list[Mapping[str, Any]] = list(unsent)
        for event in unsent:
            attach_unsent(self, event)


def failure_policy(default: str, per_call: str | None = None) -> ReplyFailure:
    """The policy for one reply: the call's `per_call`, else the consumer's `default`."""
    value = default if per_call is None else per_call
    if value not in get_args(ReplyFailure):
        raise ValueError(f"on_reply_failure / on_failure must be 'fail' or 'log', not {value!r}")
    return "log" if value == "log" else "fail"


def logs_failure(event: Mapping[str, Any]) -> bool:
    """True when the consumer asked for this reply's failure to be logged only."""
    return event.get(ON_FAILURE_KEY) == "log"


def mark(event: MutableMapping[str, Any], policy: ReplyFailure) -> MutableMapping[str, Any]:
    """`event`, carrying the consumer's choice when it is ``"log"``."""
    if policy == "log":
        event[ON_FAILURE_KEY] = "log"
    return event


def describe_reply(event: Mapping[str, Any]) -> str:
    """The reply as JSON (bytes as text, or base64 when binary), cut at `MAX_DESCRIPTION`."""
    text = json.dumps(dict(event), default=_jsonable, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= MAX_DESCRIPTION else text[:MAX_DESCRIPTION] + " ...(cut)"


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return {"base64": base64.b64encode(data).decode("ascii")}
    return repr(value)


def attach_unsent(exc: BaseException, event: Mapping[str, Any]) -> None:
    """Write the unsent reply into `exc`'s notes: the dead letter's error shows it."""
    exc.add_note(f"Unsent reply: {describe_reply(event)}")


def log_unsent(event: Mapping[str, Any], error: BaseException) -> None:
    """The log line of a reply whose failure the consumer chose not to fail the event on."""
    logger.warning(
        "Reply not sent (the consumer chose on_failure='log'): %r. Unsent reply: %s",
        error,
        describe_reply(event),
    )


@contextmanager
def reply_failures(event: Mapping[str, Any], policy: ReplyFailure) -> Iterator[None]:
    """Around one inline send: ``"log"`` logs a failure and goes on, ``"fail"`` re-raises it
    with the unsent reply attached."""
    try:
        yield
    except Exception as exc:
        if policy == "log":
            log_unsent(event, exc)
            return
        attach_unsent(exc, event)
        raise
