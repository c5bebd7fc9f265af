"""The SMTP adapter's OPTIONS, declared once (see docs/email.md), and the keys IMAP shares.

Nothing here imports aiosmtpd: the system check runs `check_smtp_options` without it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Final

from gateway.adapters import DeployRisk, is_public_host
from gateway.busy import BUSY_DELAY
from gateway.email_run import DEFAULT_APP_TIMEOUT
from gateway.email_store import checkpoint_store_problems, mail_store_problems
from gateway.options import (
    Option,
    OptionSet,
    busy_delay,
    flag,
    is_int,
    is_number,
    positive_int,
    tls_option,
)

__all__ = [
    "EMAIL_OPTIONS",
    "SMTP_OPTIONS",
    "check_smtp_options",
    "checkpoint_store_option",
]


def _seconds(value: object) -> str | None:
    return None if is_number(value) and value > 0 else "a positive number of seconds"  # type: ignore[operator]


def _port(value: object) -> str | None:
    return None if is_int(value) and 0 <= value <= 65535 else "an integer 0-65535"  # type: ignore[operator]


def _banner(value: object) -> str | None:
    printable = isinstance(value, str) and value.isprintable() and 0 < len(value) <= 200
    return None if printable else "a non-empty printable str of at most 200 characters"


def _users(value: object) -> list[str]:
    ok = value is None or (
        isinstance(value, Mapping)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
    )
    # Without the value: it holds passwords.
    return [] if ok else ["must be a dict of login -> password (str), or None"]


def _named_once(problems: Callable[[Any, str], list[str]]) -> Callable[[Any], list[str]]:
    """A gateway.email_store check whose sentences Option.problems prefixes with the key."""
    # Asked with an empty name they read " must be ..." or ": cannot import ...".
    return lambda value: [problem.lstrip(": ") for problem in problems(value, "")]


EMAIL_OPTIONS: Final = OptionSet(
    Option("MAX_IN_FLIGHT", 100, positive_int),
    Option("APP_TIMEOUT", DEFAULT_APP_TIMEOUT, _seconds),
    # The InboundMailStore (dotted path; True: the database); None: the database when
    # django_app is installed; False: nothing kept, no dedup.
    Option("STORE", None, checks=_named_once(mail_store_problems)),
)
"""The keys the SMTP and IMAP adapters share, with the same default and check."""


def checkpoint_store_option() -> Option:
    """IMAP's ``CHECKPOINT_STORE``: None (the database) or a dotted path to a class."""
    return Option("CHECKPOINT_STORE", None, checks=_named_once(checkpoint_store_problems))


def _into(key: str) -> Callable[[Any], dict[str, Any]]:
    # None was the old keys' default: it leaves the part out, so both None keep TLS off.
    return lambda value: {} if value is None else {key: value}


def _starttls() -> Option:
    """``TLS`` = ``{"CERT_FILE", "KEY_FILE"}`` for STARTTLS; ``TLS_CERT``/``TLS_KEY`` before."""
    option = tls_option("CERT_FILE", "KEY_FILE", required=("CERT_FILE", "KEY_FILE"))
    checks = option.checks
    assert checks is not None
    return dataclasses.replace(
        option,
        # A dict default makes the old keys' parts merge (with None only the last would count);
        # {} is off, as None is, and parses to None.
        default=MappingProxyType({}),
        checks=lambda value: [] if value == {} else checks(value),
        parse=lambda value: dict(value) if value else None,
        legacy=(("TLS_CERT", _into("CERT_FILE")), ("TLS_KEY", _into("KEY_FILE"))),
    )


SMTP_OPTIONS: Final = OptionSet(
    Option("HOST", "127.0.0.1"),
    Option("PORT", 2525, _port),
    Option("HOSTNAME", None),  # the name in the greeting; socket.gethostname() when None
    # The greeting's text after the host name; neutral, unlike aiosmtpd's name and version.
    Option("BANNER", "ESMTP", _banner),
    Option("DATA_SIZE_LIMIT", 26214400, positive_int),  # 25 MiB, a common MX limit
    Option("MAX_RECIPIENTS", 1000, positive_int),
    # Open sessions; one more is answered 421 and closed (each may buffer DATA_SIZE_LIMIT).
    Option("MAX_CONNECTIONS", 200, positive_int),
    # Seconds before a busy answer (451 at DATA, 421 past MAX_CONNECTIONS) is sent, at most
    # MAX_CONNECTIONS held at once: a client retrying at once retries once per BUSY_DELAY.
    Option("BUSY_DELAY", BUSY_DELAY, busy_delay),
    Option("TIMEOUT", 300.0, _seconds),  # idle connection timeout (RFC 5321 suggests 5 minutes)
    _starttls(),
    Option("REQUIRE_STARTTLS", False, flag),
    Option("AUTH_USERS", None, checks=_users),  # {login: password}; AUTH off when None
    Option("AUTH_REQUIRED", False, flag),
    Option("AUTH_REQUIRE_TLS", True, flag),
    EMAIL_OPTIONS,
)
"""Every OPTIONS key of `SMTPAdapter`, with its default and check (docs/email.md)."""


def check_smtp_options(options: Mapping[str, Any]) -> list[str]:
    """Every problem with an SMTP OPTIONS dict, one sentence each."""
    problems = SMTP_OPTIONS.check(options)
    if options.get("AUTH_REQUIRED") is True and not options.get("AUTH_USERS"):
        problems.append(
            'OPTIONS["AUTH_REQUIRED"] is True but OPTIONS["AUTH_USERS"] is empty: nobody could send'
        )
    return problems


MX_SIZE_LIMIT: Final = 26214400  # 25 MiB, what common MX hosts accept


def smtp_deploy_risks(options: Mapping[str, Any]) -> list[DeployRisk]:
    """Risky settings of a valid OPTIONS dict for ``check --deploy``."""
    values = SMTP_OPTIONS.parse(options)
    if not is_public_host(values["HOST"]):
        return []
    risks = []
    if values["DATA_SIZE_LIMIT"] > MX_SIZE_LIMIT:
        risks.append(
            DeployRisk(
                "gateway.W103",
                f'OPTIONS["DATA_SIZE_LIMIT"] is {values["DATA_SIZE_LIMIT"]} bytes on the public'
                f" address {values['HOST']!r}: every open connection may hold that much.",
                f"Keep DATA_SIZE_LIMIT at or under {MX_SIZE_LIMIT} (25 MiB) on a public port.",
            )
        )
    if values["AUTH_USERS"] and not values["AUTH_REQUIRE_TLS"]:
        risks.append(
            DeployRisk(
                "gateway.W106",
                f'OPTIONS["AUTH_USERS"] log in without TLS on the public address'
                f" {values['HOST']!r}: passwords cross the network in clear.",
                'Set OPTIONS["TLS"] and leave OPTIONS["AUTH_REQUIRE_TLS"] True.',
            )
        )
    return risks
