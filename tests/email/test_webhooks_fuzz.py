"""Every inbound-mail webhook under random requests: a 4xx each, nothing reaches the app.

One gateway serves every provider of `protocol_adapters.email_webhooks` with the secrets of
`tests.email.webhook_signers`. Each example sends one request built from a random method, one
of the webhook paths, random headers (the providers' signature and auth headers among them, with
random values) and a random body; the answer must be a 4xx, the application must never get an
``email`` scope, and the gateway must still answer its health path. Hypothesis runs in a worker
thread and each example as a coroutine on the test's loop, beside the gateway.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.types import Receive, Scope, Send
from tests.email.webhook_support import provider_options, running_webhooks

PROVIDERS = [
    "amazon_ses", "brevo", "mailersend", "mailgun", "mailjet", "mailtrap", "mandrill",
    "postal", "postmark", "resend", "sendgrid", "sparkpost",
]  # fmt: skip
NOWHERE = "http://127.0.0.1:9"  # the APIs some providers fetch from: never reached here
HEADER_NAMES = [
    "content-type", "authorization", "x-mailgun-signature", "x-mandrill-signature",
    "x-postal-signature", "svix-id", "svix-timestamp", "svix-signature", "signature",
    "x-amz-sns-message-type", "x-sparkpost-signature", "x-mailersend-signature",
]  # fmt: skip
CONTENT_TYPES = [
    "application/json", "application/x-www-form-urlencoded", "text/plain",
    "multipart/form-data; boundary=b", "multipart/form-data", "application/json; charset=x",
]  # fmt: skip


class EmailRecorder:
    """Counts the `email` scopes that got through; answers 404 to anything else over HTTP."""

    def __init__(self) -> None:
        self.emails = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "email":
            self.emails += 1
        elif scope["type"] == "http":
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})


def header_value() -> st.SearchStrategy[str]:
    text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60).map(str.strip)
    basic = st.binary(min_size=1, max_size=30).map(
        lambda b: "Basic " + base64.b64encode(b).decode()
    )
    return st.one_of(st.sampled_from(CONTENT_TYPES), text, basic)


def body() -> st.SearchStrategy[bytes]:
    form = st.dictionaries(st.text(max_size=12), st.text(max_size=30), max_size=6).map(
        lambda d: "&".join(f"{k}={v}" for k, v in d.items()).encode("utf-8", "surrogatepass")
    )
    json_like = st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
        max_leaves=12,
    ).map(lambda v: repr(v).replace("'", '"').encode("utf-8", "surrogatepass"))
    return st.one_of(st.binary(max_size=1500), form, json_like)


REQUESTS = st.tuples(
    st.sampled_from(["POST", "POST", "GET", "PUT", "PATCH", "DELETE"]),
    st.sampled_from(PROVIDERS),
    st.dictionaries(st.sampled_from(HEADER_NAMES), header_value(), max_size=5),
    body(),
)


async def test_random_requests_get_a_4xx_and_never_reach_the_app() -> None:
    app = EmailRecorder()
    adapters: dict[str, Any] = {p: provider_options(p, NOWHERE) for p in PROVIDERS}
    async with running_webhooks(app, adapters) as hooks:
        loop = asyncio.get_running_loop()

        async def example(request: tuple[str, str, dict[str, str], bytes]) -> None:
            method, provider, headers, content = request
            response = await hooks.client.request(
                method, f"{hooks.url}/email/{provider}/", headers=headers, content=content
            )
            assert 400 <= response.status_code < 500, (response.status_code, response.text)
            assert app.emails == 0
            assert (await hooks.client.get(f"{hooks.url}/-/health")).status_code == 200

        @settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(REQUESTS)
        def fuzz(request: tuple[str, str, dict[str, str], bytes]) -> None:
            asyncio.run_coroutine_threadsafe(example(request), loop).result()

        await asyncio.to_thread(fuzz)
    assert hooks.dead_letters == []
