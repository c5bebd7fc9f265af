"""The IMAP adapter's OPTIONS: defaults, validation that names every mistake, parsed accounts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from gateway.pipeline import RetryPolicy
from protocol_adapters.imap_session import ImapAccount

__all__ = ["ACCOUNT_DEFAULTS", "account_problems", "parse_accounts", "retry_policy"]

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


def account_problems(where: str, entry: Any) -> list[str]:
    """Every mistake in one ACCOUNTS entry, each naming the setting."""
    if not isinstance(entry, Mapping):
        return [f"{where} must be a dict, got {type(entry).__name__}"]
    problems = [f"{where}[{key!r}] is not a known option" for key in entry if key not in _KNOWN]
    problems += [f"{where}[{key!r}] is required" for key in _REQUIRED if not entry.get(key)]
    merged = {**ACCOUNT_DEFAULTS, **entry}
    problems += [
        f"{where}[{key!r}] must be a positive number of seconds"
        for key in _NUMBERS
        if not _positive(merged[key])
    ]
    if _positive(merged["IDLE_TIMEOUT"]) and merged["IDLE_TIMEOUT"] > _MAX_IDLE:
        problems.append(f"{where}['IDLE_TIMEOUT'] must be below 29 minutes (1740 s)")
    headers = merged["RECIPIENT_HEADERS"]
    if isinstance(headers, str) or not all(isinstance(h, str) for h in headers):
        problems.append(f"{where}['RECIPIENT_HEADERS'] must be a list of header names")
    port = merged["PORT"]
    if port is not None and (not isinstance(port, int) or not 0 < port < 65536):
        problems.append(f"{where}['PORT'] must be a TCP port number")
    on_success = merged["ON_SUCCESS"]
    if on_success != "seen" and not (
        isinstance(on_success, str) and on_success.startswith("move:") and on_success[5:]
    ):
        problems.append(f"{where}['ON_SUCCESS'] must be 'seen' or 'move:<folder>'")
    recipient = merged["RECIPIENT"] or entry.get("USERNAME")
    if not (isinstance(recipient, str) and "@" in recipient):
        problems.append(f"{where}['RECIPIENT'] is required when USERNAME is not an address")
    return problems


def parse_accounts(options: Mapping[str, Any]) -> list[ImapAccount]:
    """The accounts of already validated OPTIONS."""
    return [_account({**ACCOUNT_DEFAULTS, **entry}) for entry in options["ACCOUNTS"]]


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


def retry_policy(options: Mapping[str, Any]) -> RetryPolicy:
    """RETRY_ATTEMPTS / RETRY_BACKOFF / RETRY_MAX_BACKOFF: how a failing message is retried."""
    return RetryPolicy(
        attempts=int(options.get("RETRY_ATTEMPTS", 3)),
        initial_backoff=float(options.get("RETRY_BACKOFF", 1.0)),
        max_backoff=float(options.get("RETRY_MAX_BACKOFF", 60.0)),
    )
