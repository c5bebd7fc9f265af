"""The IMAP adapter's OPTIONS, declared once (see docs/email.md), and its ACCOUNTS entries."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from gateway.options import Option, OptionSet, reconnect_option, retry_option
from protocol_adapters.imap_session import ImapAccount
from protocol_adapters.smtp_options import EMAIL_OPTIONS, checkpoint_store_option

__all__ = ["ACCOUNT_DEFAULTS", "IMAP_OPTIONS", "account_problems", "parse_accounts"]

ACCOUNT_DEFAULTS: Final[dict[str, Any]] = {
    "PORT": None,  # 993 with SSL, else 143
    "SSL": True,
    "SSL_CAFILE": None,
    "MAILBOX": "INBOX",
    "RECIPIENT": None,  # the USERNAME when it is an address
    # Written by the delivering server: route a catch-all mailbox by the original recipient.
    "RECIPIENT_HEADERS": ("X-Original-To", "Delivered-To"),
    "ON_SUCCESS": "seen",
    "IDLE": True,
    "POLL_INTERVAL": 60.0,
    # Servers may drop a client idle for 30 minutes (RFC 3501): re-IDLE well before.
    "IDLE_TIMEOUT": 25 * 60.0,
    "TIMEOUT": 30.0,
}
_REQUIRED: Final = ("HOST", "USERNAME", "PASSWORD")
_NUMBERS: Final = ("POLL_INTERVAL", "IDLE_TIMEOUT", "TIMEOUT")
_KNOWN: Final = frozenset((*_REQUIRED, *ACCOUNT_DEFAULTS))
_MAX_IDLE: Final = 29 * 60.0


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def account_problems(entry: Any) -> list[str]:
    """Every mistake in one ACCOUNTS entry, each ``["KEY"] ...`` naming its key."""
    if not isinstance(entry, Mapping):
        return [f"must be a dict, got {type(entry).__name__}"]
    problems = [f'["{key}"] is not a known key' for key in entry if key not in _KNOWN]
    problems += [f'["{key}"] is required' for key in _REQUIRED if not entry.get(key)]
    merged = {**ACCOUNT_DEFAULTS, **entry}
    problems += [
        f'["{key}"] must be a positive number of seconds, got {merged[key]!r}'
        for key in _NUMBERS
        if not _positive(merged[key])
    ]
    idle_timeout = merged["IDLE_TIMEOUT"]
    if _positive(idle_timeout) and idle_timeout > _MAX_IDLE:
        problems.append(f'["IDLE_TIMEOUT"] must be below 29 minutes (1740 s), got {idle_timeout!r}')
    headers = merged["RECIPIENT_HEADERS"]
    if isinstance(headers, str) or not all(isinstance(h, str) for h in headers):
        problems.append(f'["RECIPIENT_HEADERS"] must be a list of header names, got {headers!r}')
    port = merged["PORT"]
    if port is not None and (not isinstance(port, int) or not 0 < port < 65536):
        problems.append(f'["PORT"] must be a TCP port number, got {port!r}')
    on_success = merged["ON_SUCCESS"]
    if on_success != "seen" and not (
        isinstance(on_success, str) and on_success.startswith("move:") and on_success[5:]
    ):
        problems.append(f"[\"ON_SUCCESS\"] must be 'seen' or 'move:<folder>', got {on_success!r}")
    recipient = merged["RECIPIENT"] or entry.get("USERNAME")
    if not (isinstance(recipient, str) and "@" in recipient):
        problems.append('["RECIPIENT"] is required when USERNAME is not an address')
    return problems


def _accounts(value: Any) -> list[str]:
    """Every mistake in OPTIONS["ACCOUNTS"]; left out or empty is the `required` message."""
    if not value:
        return []
    if not isinstance(value, list | tuple):
        # Its type only: the entries hold passwords.
        return [f"must be a non-empty list of mailboxes, got a {type(value).__name__}"]
    problems = [
        f"[{index}]{problem}" if problem.startswith("[") else f"[{index}] {problem}"
        for index, entry in enumerate(value)
        for problem in account_problems(entry)
    ]
    if problems:
        return problems
    keys = [account.key for account in parse_accounts(value)]
    return [f"lists {key} twice" for key in sorted(set(keys)) if keys.count(key) > 1]


def parse_accounts(entries: Iterable[Mapping[str, Any]]) -> list[ImapAccount]:
    """The accounts of an already checked OPTIONS["ACCOUNTS"]."""
    return [_account({**ACCOUNT_DEFAULTS, **entry}) for entry in entries]


def _account(entry: Mapping[str, Any]) -> ImapAccount:
    use_ssl = bool(entry["SSL"])
    return ImapAccount(
        host=entry["HOST"],
        port=entry["PORT"] or (993 if use_ssl else 143),
        ssl=use_ssl,
        username=entry["USERNAME"],
        password=entry["PASSWORD"],
        mailbox=entry["MAILBOX"],
        recipient=(entry["RECIPIENT"] or entry["USERNAME"]).lower(),
        on_success=entry["ON_SUCCESS"],
        poll_interval=float(entry["POLL_INTERVAL"]),
        idle_timeout=float(entry["IDLE_TIMEOUT"]),
        use_idle=bool(entry["IDLE"]),
        timeout=float(entry["TIMEOUT"]),
        ssl_cafile=entry["SSL_CAFILE"],
        recipient_headers=tuple(entry["RECIPIENT_HEADERS"]),
    )


def _into(key: str) -> Callable[[Any], dict[str, Any]]:
    return lambda value: {key: value}


IMAP_OPTIONS: Final = OptionSet(
    Option(
        "ACCOUNTS",
        (),
        checks=_accounts,
        parse=parse_accounts,
        required="and must be a non-empty list of mailboxes",
    ),
    dataclasses.replace(
        retry_option("RETRY", attempts=3, initial=1.0, maximum=60.0),
        legacy=(
            ("RETRY_ATTEMPTS", _into("ATTEMPTS")),
            ("RETRY_BACKOFF", _into("INITIAL_BACKOFF")),
            ("RETRY_MAX_BACKOFF", _into("MAX_BACKOFF")),
        ),
    ),
    dataclasses.replace(
        reconnect_option(1.0, 60.0),
        legacy=(("RECONNECT_BACKOFF", _into("INITIAL")), ("RECONNECT_MAX_BACKOFF", _into("MAX"))),
    ),
    EMAIL_OPTIONS,
    checkpoint_store_option(),
)
"""Every OPTIONS key of `ImapAdapter`, with its default and check (docs/email.md)."""
