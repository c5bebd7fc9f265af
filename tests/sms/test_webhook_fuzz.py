"""Every SMS webhook under random requests: a 4xx each, nothing reaches the application.

Twilio, Vonage, Plivo and Telnyx, each on a gateway of its own (`tests.sms.providers`) with
made-up secrets. Each example sends one request to the provider's message or status path with a
random method, random headers (its signature headers among them, with random values) and a
random body; the answer must be a 4xx, no ``sms`` scope may reach the application, no dead
letter may appear, and the gateway still answers its health path. Hypothesis runs in a worker
thread and each example as a coroutine on the test's loop, beside the gateway.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from gateway.types import Receive, Scope, Send
from tests.sms.providers import running_provider

NOWHERE = "http://127.0.0.1:9"  # the providers' REST APIs: never reached here
PROVIDERS: dict[str, tuple[str, dict[str, Any]]] = {
    "twilio": ("protocol_adapters.twilio_sms.TwilioSmsAdapter", {"AUTH_TOKEN": "fuzz-token"}),
    "vonage": (
        "protocol_adapters.vonage_sms.VonageSmsAdapter",
        {"API_KEY": "abcd1234", "API_SECRET": "s", "SIGNATURE_SECRET": "fuzz-signature-secret"},
    ),
    "plivo": (
        "protocol_adapters.plivo_sms.PlivoSmsAdapter",
        {"AUTH_ID": "MA" + "A" * 18, "AUTH_TOKEN": "fuzz-token", "FROM": "14155550100"},
    ),
    "telnyx": (
        "protocol_adapters.telnyx_sms.TelnyxSmsAdapter",
        {
            "PUBLIC_KEY": base64.b64encode(bytes(SigningKey.generate().verify_key)).decode(),
            "API_KEY": "KEY0123456789",
            "FROM": "+13125550100",
        },
    ),
}
HEADER_NAMES = [
    "content-type", "x-twilio-signature", "x-plivo-signature-v3",
    "x-plivo-signature-v3-nonce", "x-plivo-signature-v2", "x-plivo-signature-v2-nonce",
    "telnyx-signature-ed25519", "telnyx-timestamp", "authorization",
]  # fmt: skip
CONTENT_TYPES = ["application/json", "application/x-www-form-urlencoded", "text/plain"]


class SmsRecorder:
    """Counts the `sms` scopes that got through; answers 404 to anything else over HTTP."""

    def __init__(self) -> None:
        self.messages = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "sms":
            self.messages += 1
        elif scope["type"] == "http":
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})


TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60).map(str.strip)
FIELDS = st.sampled_from(
    ["From", "To", "Body", "MessageSid", "msisdn", "to", "messageId", "text", "sig",
     "timestamp", "nonce", "Text", "MessageUUID", "data", "payload"]
)  # fmt: skip
FORM = st.dictionaries(FIELDS, TEXT, max_size=8).map(
    lambda d: "&".join(f"{k}={v}" for k, v in d.items()).encode()
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(FIELDS, inner, max_size=5),
    max_leaves=12,
).map(lambda v: repr(v).replace("'", '"').replace("None", "null").encode())
REQUESTS = st.tuples(
    st.sampled_from(["POST", "POST", "GET", "PUT", "DELETE"]),
    st.sampled_from(["/", "/status/"]),
    st.dictionaries(
        st.sampled_from(HEADER_NAMES), st.sampled_from(CONTENT_TYPES) | TEXT, max_size=4
    ),
    st.one_of(st.binary(max_size=800), FORM, JSON),
    st.dictionaries(FIELDS, TEXT, max_size=4),
)


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
async def test_random_requests_get_a_4xx_and_never_reach_the_app(provider: str) -> None:
    backend, options = PROVIDERS[provider]
    app = SmsRecorder()
    options = {**options, "API_BASE_URL": NOWHERE}
    async with running_provider(app, backend, options) as gw:
        loop = asyncio.get_running_loop()

        async def example(request: Any) -> None:
            method, tail, headers, content, query = request
            url = f"{gw.url}/sms/{provider}{tail}"
            response = await gw.client.request(
                method, url, headers=headers, content=content, params=query
            )
            assert 400 <= response.status_code < 500, (response.status_code, response.text)
            assert app.messages == 0
            assert (await gw.client.get(f"{gw.url}/-/health")).status_code == 200

        @settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(REQUESTS)
        def fuzz(request: Any) -> None:
            asyncio.run_coroutine_threadsafe(example(request), loop).result()

        await asyncio.to_thread(fuzz)
        assert gw.dead_letters == []


async def test_a_vonage_json_body_with_a_null_sig_is_refused() -> None:
    backend, options = PROVIDERS["vonage"]
    app = SmsRecorder()
    async with running_provider(app, backend, {**options, "API_BASE_URL": NOWHERE}) as gw:
        response = await gw.client.post(
            f"{gw.url}/sms/vonage/",
            content=b'{"":null,"sig":null}',
            headers={"content-type": "application/json"},
        )
    assert response.status_code == 403
    assert app.messages == 0
