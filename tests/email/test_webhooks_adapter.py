"""The webhook adapter's own rules: options, routing, dedup, the provider's API, body limits."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from email.message import EmailMessage

import pytest
from django.core import checks
from django.test import override_settings

from django_app.models import InboundEmail
from gateway import AsyncEmailConsumer, EmailToRouter, ProtocolTypeRouter, address
from gateway.testing import EmailCommunicator
from protocol_adapters.email_webhooks import EmailWebhookAdapter
from protocol_adapters.email_webhooks_options import PROVIDERS
from tests.email.support import Inbox, make_app
from tests.email.webhook_signers import (
    BACKEND,
    BASIC,
    mail,
    sign_amazon_ses,
    sign_brevo,
    sign_mailgun,
    sign_postmark,
    sign_sendgrid,
    sns_sign,
)
from tests.email.webhook_support import (
    provider_api,
    provider_options,
    running_webhooks,
)

pytestmark = pytest.mark.django_db(transaction=True)


# --- options -----------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
def test_each_providers_options_pass(provider: str) -> None:
    assert EmailWebhookAdapter.check_options(provider_options(provider, "http://x.test")) == []


def test_every_problem_is_named() -> None:
    problems = EmailWebhookAdapter.check_options(
        {
            "PROVIDER": "postmark",
            "WEBHOOK_SECRET": "no-colon",
            "SIGNING_KEY": "k",
            "ON_APP_ERROR": "later",
            "WEBHOOK_PATH": "email",
            "TOKEN": "x",
        }
    )
    text = "\n".join(problems)
    assert 'OPTIONS["TOKEN"] is not a known key' in text
    assert "OPTIONS[\"WEBHOOK_SECRET\"] must be 'user:password'" in text
    assert "no-colon" in text
    assert 'OPTIONS["ON_APP_ERROR"] must be one of None' in text
    assert 'OPTIONS["WEBHOOK_PATH"] must be a path' in text
    assert 'OPTIONS["SIGNING_KEY"] is not used by postmark' in text
    assert len(problems) == 5


def test_what_each_provider_needs_is_required() -> None:
    assert EmailWebhookAdapter.check_options({}) == [
        'OPTIONS["PROVIDER"] is required (one of ' + ", ".join(PROVIDERS) + ")"
    ]
    [unknown] = EmailWebhookAdapter.check_options({"PROVIDER": "pigeon"})
    assert unknown.startswith("OPTIONS[\"PROVIDER\"] must be one of 'amazon_ses'")
    [secret] = EmailWebhookAdapter.check_options({"PROVIDER": "mailgun"})
    assert secret.startswith('OPTIONS["SIGNING_KEY"] is required: mailgun webhooks')
    brevo = EmailWebhookAdapter.check_options({"PROVIDER": "brevo", "WEBHOOK_SECRET": BASIC})
    assert brevo == [
        'OPTIONS["API_KEY"] is required: brevo posts only an id; the message is fetched '
        "from its API"
    ]
    either = EmailWebhookAdapter.check_options({"PROVIDER": "resend", "API_KEY": "k"})
    assert either[0].startswith('OPTIONS["SIGNING_KEY"] or OPTIONS["WEBHOOK_SECRET"] is required')
    sns = {"PROVIDER": "postmark", "WEBHOOK_SECRET": BASIC, "SNS_SIGNATURE": False}
    assert EmailWebhookAdapter.check_options(sns) == [
        'OPTIONS["SNS_SIGNATURE"] is for amazon_ses only, not postmark'
    ]
    retry = {"PROVIDER": "mailjet", "WEBHOOK_SECRET": BASIC, "ON_APP_ERROR": "retry"}
    assert EmailWebhookAdapter.check_options(retry) == [
        'OPTIONS["ON_APP_ERROR"] cannot be "retry": mailjet documents no retry of inbound '
        'webhooks; use "dead_letter"'
    ]


def test_the_system_check_reports_them_under_the_adapter() -> None:
    gateway = {"ADAPTERS": {"inbound": {"BACKEND": BACKEND, "OPTIONS": {"PROVIDER": "postmark"}}}}
    with override_settings(GATEWAY=gateway):
        found = checks.run_checks(tags=["gateway"])
    text = "\n".join(str(message) for message in found)
    secret = 'GATEWAY["ADAPTERS"]["inbound"]["OPTIONS"]["WEBHOOK_SECRET"] is required: postmark'
    assert secret in text


# --- requests ----------------------------------------------------------------------------------


async def test_amazon_sns_without_credentials_gets_a_basic_auth_challenge() -> None:
    inbox = Inbox()
    async with provider_api() as api:
        adapters = {"ses": provider_options("amazon_ses", api.url)}
        async with running_webhooks(make_app(inbox), adapters) as hooks:
            response = await hooks.post(sign_amazon_ses(mail(), api=api), auth=None)
            answered = await hooks.post(sign_amazon_ses(mail(), api=api))
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Basic realm=")
    assert answered.status_code == 200
    assert len(inbox.seen) == 1


async def test_an_sns_message_must_carry_amazons_signature() -> None:
    inbox = Inbox()
    async with provider_api() as api:
        adapters = {"ses": provider_options("amazon_ses", api.url)}
        async with running_webhooks(make_app(inbox), adapters) as hooks:
            tampered = sign_amazon_ses(mail(), api=api)
            sns = json.loads(tampered.content or b"")
            sns["Message"] = sns["Message"].replace("PASS", "FAIL")  # after signing
            tampered.content = json.dumps(sns).encode()
            elsewhere = sign_amazon_ses(mail(), api=api)
            moved = json.loads(elsewhere.content or b"")
            moved["SigningCertURL"] = "https://attacker.example/SimpleNotificationService-1.pem"
            elsewhere.content = json.dumps(moved).encode()
            responses = [await hooks.post(tampered), await hooks.post(elsewhere)]
    assert [r.status_code for r in responses] == [403, 403]
    assert "does not match" in responses[0].text
    assert "not an allowed SNS certificate" in responses[1].text
    assert api.certificate_fetches == 1  # once, for the first; never from another host
    assert inbox.seen == []


async def test_the_sns_certificate_unavailable_gets_503_then_it_is_fetched_once() -> None:
    inbox = Inbox()
    async with provider_api() as api:
        adapters = {"ses": provider_options("amazon_ses", api.url)}
        async with running_webhooks(make_app(inbox), adapters) as hooks:
            post = sign_amazon_ses(mail(), api=api)
            api.fail_next = 1
            failed = await hooks.post(post)
            retried = await hooks.post(post)
            other = await hooks.post(sign_amazon_ses(mail(), api=api))
    assert (failed.status_code, retried.status_code, other.status_code) == (503, 200, 200)
    assert api.certificate_fetches == 2  # the failed fetch, then once for good
    assert len(inbox.seen) == 2


async def test_an_unrouted_message_is_kept_as_a_dead_letter_and_answered_200() -> None:
    inbox = Inbox()
    async with running_webhooks(make_app(inbox), {"postmark": provider_options("postmark")}) as h:
        response = await h.post(sign_postmark(mail(to="nobody@elsewhere.test")))
        letters = list(h.dead_letters)
    assert response.status_code == 200
    assert inbox.seen == []
    [letter] = letters
    assert letter.error.startswith("RouteNotFound")
    assert letter.scope["recipient"] == "nobody@elsewhere.test"
    assert letter.scope["source"] == "postmark"


async def test_every_routed_recipient_of_a_message_gets_it_once() -> None:
    inbox = Inbox()
    async with provider_api() as api:
        post = sign_amazon_ses(mail(), api=api)
        sns = json.loads(post.content or b"")
        notification = json.loads(sns["Message"])
        notification["receipt"]["recipients"] = [
            "support@example.com",
            "sensor-7@devices.example.com",
            "stranger@elsewhere.test",
        ]
        sns["Message"] = json.dumps(notification)
        post.content = json.dumps(sns_sign(sns)).encode()
        adapters = {"ses": provider_options("amazon_ses", api.url)}
        async with running_webhooks(make_app(inbox), adapters) as hooks:
            response = await hooks.post(post)
    assert response.status_code == 200
    assert sorted(seen["recipient"] for seen in inbox.seen) == [
        "sensor-7@devices.example.com",
        "support@example.com",
    ]
    assert {seen["scope"]["source"] for seen in inbox.seen} == {"amazon_ses"}


async def test_the_same_message_under_another_event_id_after_a_restart_is_a_duplicate() -> None:
    inbox = Inbox()
    message = mail()
    adapters = {"postmark": provider_options("postmark")}
    async with running_webhooks(make_app(inbox), adapters) as hooks:
        first = await hooks.post(sign_postmark(message, event_id="event-1"))
    async with running_webhooks(make_app(inbox), adapters) as hooks:
        again = await hooks.post(sign_postmark(message, event_id="event-2"))
    assert (first.status_code, again.status_code) == (200, 200)
    assert len(inbox.seen) == 1
    assert await InboundEmail.objects.acount() == 1


async def test_a_provider_api_failure_gets_503_and_the_retry_is_handled() -> None:
    inbox = Inbox()
    async with provider_api() as api:
        adapters = {"brevo": provider_options("brevo", api.url)}
        async with running_webhooks(make_app(inbox), adapters) as hooks:
            post = sign_brevo(mail(), api=api)
            api.fail_next = 1
            failed = await hooks.post(post)
            retried = await hooks.post(post)
    assert failed.status_code == 503
    assert retried.status_code == 200
    assert len(inbox.seen) == 1


async def test_a_full_dispatcher_refuses_before_the_request_is_read() -> None:
    # Mailgun retries: past MAX_IN_FLIGHT it is told to, before its mail is read and parsed.
    entered, release = asyncio.Event(), asyncio.Event()

    class Slow(AsyncEmailConsumer):
        async def receive(self, message: EmailMessage) -> None:
            entered.set()
            await release.wait()

    app = ProtocolTypeRouter(
        {"email": EmailToRouter([address(r"support@example\.com", Slow.as_asgi())])}
    )
    adapters = {"mailgun": provider_options("mailgun", MAX_IN_FLIGHT=1)}
    async with running_webhooks(app, adapters) as hooks:
        first = asyncio.create_task(hooks.post(sign_mailgun(mail(subject="one"))))
        await asyncio.wait_for(entered.wait(), 10)
        signed = sign_mailgun(mail(subject="two"))
        assert signed.data is not None
        forged = dataclasses.replace(signed, data={**signed.data, "signature": "0" * 64})
        busy = await hooks.post(forged)
        release.set()
        assert (await first).status_code == 200
        retried = await hooks.post(signed)
    # 503, not the 403 its signature would get: refused before it was read or checked.
    assert busy.status_code == 503
    assert busy.headers["retry-after"] == "5"
    assert retried.status_code == 200
    assert await InboundEmail.objects.acount() == 2


async def test_providers_side_by_side_each_on_its_path() -> None:
    inbox = Inbox()
    adapters = {"postmark": provider_options("postmark"), "mailgun": provider_options("mailgun")}
    async with running_webhooks(make_app(inbox), adapters) as hooks:
        one = await hooks.post(sign_postmark(mail(subject="one")))
        two = await hooks.post(sign_mailgun(mail(subject="two")))
        crossed = await hooks.post(sign_postmark(mail()), path="/email/mailgun/")
    assert (one.status_code, two.status_code) == (200, 200)
    assert crossed.status_code == 403  # Postmark's request has no Mailgun signature
    assert [(s["subject"], s["scope"]["source"]) for s in inbox.seen] == [
        ("one", "postmark"),
        ("two", "mailgun"),
    ]


async def test_a_body_over_the_limit_gets_413() -> None:
    inbox = Inbox()
    adapters = {"postmark": provider_options("postmark", MAX_BODY_BYTES=2000)}
    async with running_webhooks(make_app(inbox), adapters) as hooks:
        response = await hooks.post(sign_postmark(mail()))
    assert response.status_code == 413
    assert inbox.seen == []


async def test_a_form_over_djangos_upload_limit_gets_413() -> None:
    inbox = Inbox()
    async with running_webhooks(make_app(inbox), {"sg": provider_options("sendgrid")}) as hooks:
        with override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=500):
            response = await hooks.post(sign_sendgrid(mail()))
    assert response.status_code == 413
    assert "DATA_UPLOAD_MAX_MEMORY_SIZE" in response.text
    assert inbox.seen == []


async def test_on_app_error_dead_letter_answers_200_for_a_retrying_provider() -> None:
    inbox = Inbox(fail_times=5)
    retry = {"ATTEMPTS": 2, "INITIAL_BACKOFF": 0.01, "MAX_BACKOFF": 0.01}
    options = provider_options("postmark", ON_APP_ERROR="dead_letter", RETRY=retry)
    async with running_webhooks(make_app(inbox), {"postmark": options}) as hooks:
        response = await hooks.post(sign_postmark(mail()))
        letters = list(hooks.dead_letters)
    assert response.status_code == 200
    [letter] = letters
    assert letter.attempts == 2


async def test_the_communicator_builds_a_scope_as_a_provider_webhook_would() -> None:
    inbox = Inbox()
    communicator = EmailCommunicator(make_app(inbox), mail(), source="postmark", adapter="pm")
    outcome = await communicator.deliver()
    assert outcome.handled
    [seen] = inbox.seen
    assert (seen["scope"]["source"], seen["scope"]["adapter"]) == ("postmark", "pm")
    assert [attachment.filename for attachment in seen["attachments"]] == ["report.pdf"]
