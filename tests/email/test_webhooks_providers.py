"""Every provider's inbound webhook against a running gateway, signed as the provider signs it.

Each case runs once per provider: a signed post reaches the consumer with its attachment as a
MIME part; a forged one, a replayed event, another method and a malformed body get their
answers and never reach the application; an application error gets the provider's retry
status, or, for a provider that does not retry, a dead letter.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from django_app.models import InboundEmail
from gateway.email import parse_message
from protocol_adapters.email_webhooks_options import PROVIDERS
from tests.email.support import Inbox, make_app
from tests.email.webhook_signers import (
    MANDRILL_URL,
    NEEDS_API,
    PDF,
    SIGNERS,
    SIGNING_KEY,
    Post,
    mail,
    mailgun_signature,
    mandrill_signature,
    postal_signature,
    svix_signature,
)
from tests.email.webhook_support import (
    ProviderApi,
    Webhooks,
    provider_api,
    provider_options,
    running_webhooks,
)

pytestmark = pytest.mark.django_db(transaction=True)

ALL = sorted(PROVIDERS)


@asynccontextmanager
async def webhook(provider: str, inbox: Inbox, **options: Any) -> AsyncIterator[Context]:
    async with provider_api() as api:
        adapters = {provider: provider_options(provider, api.url, **options)}
        async with running_webhooks(make_app(inbox), adapters) as hooks:
            yield Context(provider, hooks, api)


class Context:
    def __init__(self, provider: str, hooks: Webhooks, api: ProviderApi) -> None:
        self.provider = provider
        self.hooks = hooks
        self.api = api

    def sign(self, message: Any, event_id: str | None = None) -> Post:
        signer = SIGNERS[self.provider]
        if self.provider in NEEDS_API:
            return signer(message, event_id, api=self.api)  # type: ignore[no-any-return]
        return signer(message, event_id)  # type: ignore[no-any-return]


@pytest.mark.parametrize("provider", ALL)
async def test_a_signed_webhook_reaches_the_consumer_with_its_attachment(provider: str) -> None:
    inbox = Inbox()
    message = mail(subject=f"Hello from {provider}")
    async with webhook(provider, inbox) as context:
        response = await context.hooks.post(context.sign(message))
    assert response.status_code == 200, response.text
    [seen] = inbox.seen
    assert seen["recipient"] == "support@example.com"
    assert seen["sender"] == "alice@customer.test"
    assert seen["subject"] == f"Hello from {provider}"
    assert seen["text"].strip() == "Please help."
    assert seen["scope"]["source"] == provider
    assert seen["scope"]["adapter"] == provider
    assert seen["scope"]["message_id"] == message["Message-ID"].strip("<>")
    [attachment] = seen["attachments"]
    assert attachment.filename == "report.pdf"
    assert attachment.content_type == "application/pdf"
    assert attachment.content == PDF
    row = await InboundEmail.objects.aget()
    assert (row.source, row.status, row.recipient) == (provider, "handled", "support@example.com")


@pytest.mark.parametrize("provider", ALL)
async def test_a_forged_webhook_is_refused_before_the_application(provider: str) -> None:
    inbox = Inbox()
    async with webhook(provider, inbox) as context:
        signed = context.sign(mail())
        response = await context.hooks.post(forged(signed))
        unsigned = await context.hooks.post(stripped(signed))
    assert response.status_code == 403, response.text
    assert unsigned.status_code in (401, 403), unsigned.text
    assert inbox.seen == []
    assert await InboundEmail.objects.acount() == 0


@pytest.mark.parametrize("provider", ALL)
async def test_a_replayed_event_is_answered_and_not_handled_again(provider: str) -> None:
    inbox = Inbox()
    async with webhook(provider, inbox) as context:
        signed = context.sign(mail())
        first = await context.hooks.post(signed)
        again = await context.hooks.post(signed)
    assert (first.status_code, again.status_code) == (200, 200), again.text
    assert len(inbox.seen) == 1


@pytest.mark.parametrize("provider", ALL)
async def test_another_method_gets_405(provider: str) -> None:
    inbox = Inbox()
    async with webhook(provider, inbox) as context:
        signed = context.sign(mail())
        response = await context.hooks.post(signed, method="PUT")
        head = await context.hooks.client.head(context.hooks.url + signed.path)
    assert response.status_code == 405
    assert response.headers["allow"] == "POST, HEAD"
    assert head.status_code == 200  # providers may check the URL with HEAD
    assert inbox.seen == []


@pytest.mark.parametrize("provider", ALL)
async def test_a_malformed_body_gets_400(provider: str) -> None:
    inbox = Inbox()
    async with webhook(provider, inbox) as context:
        response = await context.hooks.post(malformed(provider, context.sign(mail())))
    assert response.status_code == 400, response.text
    assert inbox.seen == []


@pytest.mark.parametrize("provider", ALL)
async def test_an_application_error_gets_the_retry_answer_or_a_dead_letter(provider: str) -> None:
    status = PROVIDERS[provider].retry_status
    # A provider that retries is told to at once; for the others the dispatcher tries twice.
    inbox = Inbox(fail_times=1 if status is not None else 2)
    retry = {"ATTEMPTS": 2, "INITIAL_BACKOFF": 0.01, "MAX_BACKOFF": 0.01}
    async with webhook(provider, inbox, RETRY=retry) as context:
        signed = context.sign(mail())
        failed = await context.hooks.post(signed)
        letters = list(context.hooks.dead_letters)
        if status is not None:
            retried = await context.hooks.post(signed)  # the provider's retry
            assert retried.status_code == 200, retried.text
    row = await InboundEmail.objects.aget()
    if status is not None:
        assert failed.status_code == status
        assert letters == []
        [seen] = inbox.seen
        assert seen["attempt"] == 2
        assert (row.status, row.attempts) == ("handled", 2)
    else:
        assert failed.status_code == 200  # the dead letter is the copy to replay
        [letter] = letters
        assert (letter.protocol, letter.attempts) == ("email", 2)
        assert letter.scope["source"] == provider
        [part] = parse_message(letter.payload).iter_attachments()
        assert part.get_content() == PDF
        assert inbox.seen == []
        assert row.status == "failed"


# --- forging and breaking requests -------------------------------------------------------------


def forged(post: Post) -> Post:
    """The same request with a wrong password, or its body changed after signing."""
    post = copy.deepcopy(post)
    if post.auth is not None:
        post.auth = (post.auth[0], "wrong-password")
    elif post.content is not None:
        post.content += b" "  # still the provider's JSON, no longer what it signed
    elif post.data is not None and "signature" in post.data:
        post.data["signature"] = mailgun_signature(post.data["timestamp"], "another-token")
    elif post.data is not None:
        post.data["mandrill_events"] += " "
    return post


def stripped(post: Post) -> Post:
    """The same request without its password or signature."""
    post = copy.deepcopy(post)
    post.auth = None
    for name in ("signature", "x-postal-signature", "x-mandrill-signature", "svix-signature",
                 "mailtrap-signature"):  # fmt: skip
        post.headers.pop(name, None)
    if post.data is not None:
        post.data.pop("signature", None)
    return post


def malformed(provider: str, post: Post) -> Post:
    """A request authenticated as the provider would, whose body is not the provider's."""
    post = copy.deepcopy(post)
    garbage = b'{"not": "an inbound event"'
    if provider == "mailgun":
        timestamp, token = "1700000000", "a" * 50
        post.data = {"timestamp": timestamp, "token": token,
                     "signature": mailgun_signature(timestamp, token)}  # fmt: skip
        post.files = None
    elif provider == "mandrill":
        post.data = {"mandrill_events": "not json"}
        post.headers["x-mandrill-signature"] = mandrill_signature(MANDRILL_URL, post.data)
    elif provider == "sendgrid":
        post.files = {"subject": (None, b"no email field", "text/plain")}
    else:
        post.content = garbage
        resign(provider, post)
    return post


def resign(provider: str, post: Post) -> None:
    assert post.content is not None
    if provider in ("mailersend", "mailtrap"):
        digest = hmac.new(SIGNING_KEY.encode(), post.content, hashlib.sha256).hexdigest()
        post.headers["signature" if provider == "mailersend" else "mailtrap-signature"] = digest
    elif provider == "postal":
        post.headers["x-postal-signature"] = postal_signature(post.content)
    elif provider == "resend":
        stamp = int(post.headers["svix-timestamp"])
        post.headers["svix-signature"] = svix_signature(
            post.headers["svix-id"], stamp, post.content
        )
