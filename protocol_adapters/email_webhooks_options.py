"""The mail-provider webhook adapter's OPTIONS and its providers, declared once (docs/email.md).

`PROVIDERS` says, for every provider django-anymail takes inbound mail from, which of
anymail's inbound views checks and parses its webhook, which secrets that view needs, and
what the provider does when the webhook fails: the status that makes it retry (from the
provider's documentation), or ``None`` where it documents no retry for inbound mail, in which
case a message the application failed on is kept as a dead letter and the provider gets its
success answer. This module imports no anymail: the adapter module does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from gateway.email_store import mail_store_problems
from gateway.intakes import IntakeLimits, intake_option
from gateway.options import (
    Option,
    OptionSet,
    flag,
    one_of,
    optional_http_url,
    optional_text,
    positive_int,
    positive_number,
    retry_option,
)

__all__ = [
    "AMAZON_CERT_URL",
    "EMAIL_WEBHOOK_OPTIONS",
    "PROVIDERS",
    "Provider",
    "check_webhook_options",
]

#: Where Amazon SNS publishes the certificates it signs messages with.
AMAZON_CERT_URL: Final = (
    r"https://sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/SimpleNotificationService-[0-9a-f]+\.pem"
)

Secret = Literal["WEBHOOK_SECRET", "SIGNING_KEY"]


@dataclass(frozen=True)
class Provider:
    """One provider: anymail's inbound view for it and how its webhook is secured and retried."""

    name: str
    view: str
    """The view class in ``anymail.webhooks``, as ``"module.Class"``."""
    secured_by: tuple[Secret, ...]
    """The OPTIONS keys that authenticate a request; at least one must be set."""
    signing_kwarg: str | None = None
    """anymail's name for ``SIGNING_KEY`` in this view."""
    api_kwarg: str | None = None
    """anymail's name for ``API_KEY`` (a provider whose webhook carries no message body)."""
    retry_status: int | None = None
    """The answer that makes the provider retry; None: it does not, we keep a dead letter."""
    fetches: bool = False
    """True when parsing fetches from the provider's API (run in a thread, not the loop)."""


PROVIDERS: Final[Mapping[str, Provider]] = {
    p.name: p
    for p in (
        # SNS retries a notification on a 5xx (3 times in a minute unless the subscription's
        # delivery policy says more); anymail checks the basic auth in the subscription URL.
        Provider("amazon_ses", "amazon_ses.AmazonSESInboundWebhookView", ("WEBHOOK_SECRET",),
                 retry_status=500, fetches=True),
        # Brevo's webhooks retry only on 429 and timeouts; its inbound parse documents none.
        Provider("brevo", "brevo.BrevoInboundWebhookView", ("WEBHOOK_SECRET",),
                 api_kwarg="api_key", fetches=True),
        Provider("mailersend", "mailersend.MailerSendInboundWebhookView", ("SIGNING_KEY",),
                 signing_kwarg="inbound_secret"),
        # Mailgun retries anything but 200 and 406 for 8 hours.
        Provider("mailgun", "mailgun.MailgunInboundWebhookView", ("SIGNING_KEY",),
                 signing_kwarg="webhook_signing_key", retry_status=503),
        Provider("mailjet", "mailjet.MailjetInboundWebhookView", ("WEBHOOK_SECRET",)),
        Provider("mailtrap", "mailtrap.MailtrapInboundWebhookView",
                 ("SIGNING_KEY", "WEBHOOK_SECRET"), signing_kwarg="inbound_secret",
                 api_kwarg="api_token", fetches=True),
        Provider("mandrill", "mandrill.MandrillCombinedWebhookView", ("SIGNING_KEY",),
                 signing_kwarg="webhook_key"),
        Provider("postal", "postal.PostalInboundWebhookView", ("SIGNING_KEY",),
                 signing_kwarg="webhook_key"),
        # Postmark retries anything but 200 (403 stops it) 10 times over 10.5 hours.
        Provider("postmark", "postmark.PostmarkInboundWebhookView", ("WEBHOOK_SECRET",),
                 retry_status=500),
        # Resend delivers through Svix, which retries any non-2xx for about a day.
        Provider("resend", "resend.ResendInboundWebhookView", ("SIGNING_KEY", "WEBHOOK_SECRET"),
                 signing_kwarg="inbound_secret", api_kwarg="api_key", retry_status=503,
                 fetches=True),
        # SendGrid's Inbound Parse retries a 5xx for 3 days.
        Provider("sendgrid", "sendgrid.SendGridInboundWebhookView", ("WEBHOOK_SECRET",),
                 retry_status=503),
        Provider("sparkpost", "sparkpost.SparkPostInboundWebhookView", ("WEBHOOK_SECRET",)),
    )
}  # fmt: skip


def _path(value: object) -> str | None:
    ok = value is None or (isinstance(value, str) and value.startswith("/"))
    return None if ok else "a path starting with '/'"


def _secret(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return None
    if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
        return None
    return "a str (or a list of str), from the environment"


def _basic_auth(value: object) -> str | None:
    problem = _secret(value)
    if problem is not None:
        return problem
    items = [value] if isinstance(value, str) else list(value or ())  # type: ignore[call-overload]
    if all(":" in item for item in items):
        return None
    return "'user:password' (or a list of them), from the environment"


def _kwargs(value: object) -> str | None:
    if isinstance(value, Mapping) and all(isinstance(key, str) for key in value):
        return None
    return "a dict of anymail settings for this provider's view"


def _pattern(value: object) -> str | None:
    if not isinstance(value, str):
        return "a regular expression (str)"
    try:
        re.compile(value)
    except re.error as exc:
        return f"a valid regular expression ({exc})"
    return None


def _store(value: object) -> list[str]:
    # Asked with an empty name, the sentences read " must be ..." or ": cannot import ...".
    return [problem.lstrip(": ") for problem in mail_store_problems(value, "")]


EMAIL_WEBHOOK_OPTIONS: Final = OptionSet(
    Option("PROVIDER", None, one_of(*PROVIDERS), required="(one of " + ", ".join(PROVIDERS) + ")"),
    # Default: /email/<PROVIDER>/.
    Option("WEBHOOK_PATH", None, _path),
    Option("WEBHOOK_SECRET", None, _basic_auth),
    Option("SIGNING_KEY", None, _secret),
    Option("API_KEY", None, optional_text),
    Option("API_URL", None, optional_http_url),
    Option("WEBHOOK_URL", None, optional_http_url),
    Option("ANYMAIL", {}, _kwargs),
    Option("ON_APP_ERROR", None, one_of(None, "retry", "dead_letter")),
    # Amazon SES only: check SNS's own signature too (anymail checks only the basic auth).
    Option("SNS_SIGNATURE", True, flag),
    Option("SNS_CERT_URL", AMAZON_CERT_URL, _pattern),
    Option("MAX_BODY_BYTES", 40 * 1024 * 1024, positive_int),
    Option("MAX_IN_FLIGHT", 100, positive_int),
    # Requests read, checked and parsed at once, and waiting for that (gateway.intakes).
    intake_option(IntakeLimits(concurrency=8)),
    Option("APP_TIMEOUT", 25.0, positive_number),
    retry_option("RETRY", attempts=3, initial=0.5, maximum=5.0),
    Option("STORE", None, checks=_store),
)
"""Every OPTIONS key of `EmailWebhookAdapter`, with its default and check (docs/email.md)."""


def check_webhook_options(options: Mapping[str, Any]) -> list[str]:
    """Every problem with OPTIONS: each key's own, then what the PROVIDER needs."""
    errors = EMAIL_WEBHOOK_OPTIONS.check(options)
    provider = PROVIDERS.get(str(options.get("PROVIDER")))
    if provider is None:
        return errors
    keys = " or ".join(f'OPTIONS["{key}"]' for key in provider.secured_by)
    if not any(options.get(key) for key in provider.secured_by):
        errors.append(
            f"{keys} is required: {provider.name} webhooks are authenticated by it "
            "(unset, anyone could post mail)"
        )
    if provider.api_kwarg is not None and not options.get("API_KEY"):
        errors.append(
            f'OPTIONS["API_KEY"] is required: {provider.name} posts only an id; '
            "the message is fetched from its API"
        )
    if options.get("SIGNING_KEY") and provider.signing_kwarg is None:
        errors.append(
            f'OPTIONS["SIGNING_KEY"] is not used by {provider.name}: its webhook is '
            'authenticated by OPTIONS["WEBHOOK_SECRET"] (basic auth)'
        )
    for key in ("SNS_SIGNATURE", "SNS_CERT_URL"):
        if key in options and provider.name != "amazon_ses":
            errors.append(f'OPTIONS["{key}"] is for amazon_ses only, not {provider.name}')
    if options.get("ON_APP_ERROR") == "retry" and provider.retry_status is None:
        errors.append(
            f'OPTIONS["ON_APP_ERROR"] cannot be "retry": {provider.name} documents '
            'no retry of inbound webhooks; use "dead_letter"'
        )
    return errors
