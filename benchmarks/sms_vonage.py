"""Vonage SMS webhook: signed requests/s into the same handler, ours vs a plain Django view.

Run from the project root:  .venv/bin/python benchmarks/sms_vonage.py [--seconds 8]

Servers, each started here as a subprocess on a free port, one at a time, same settings:
- gateway: `python -m gateway run` with the Vonage adapter (signature check with the vonage
           SDK's Auth.check_signature, messageId dedup, per-sender ordering) into an
           SMSFromRouter and an AsyncSmsConsumer that calls `handle`; answered 204;
- django:  `uvicorn` (httptools, uvloop) serving Django's ASGI handler with a plain async view
           doing the same: Auth.check_signature, the same 405 / 403 / 400 checks, `handle`,
           204.
Vonage has no reply format in its webhook answer (replies go out through its SMS API after
the answer), so `handle` only computes its reply text: the webhook path is what is measured.
The load generator keeps 50 keep-alive connections busy with raw HTTP/1.1: each request is a
fresh inbound-message form (new messageId, one of 1,000 senders) signed as Vonage signs it
(HMAC-SHA256, the SDK's sign_params); a response counts only when it is 204. The runs are
`benchmarks.webhook_load`'s.
"""

from __future__ import annotations

import functools
import time
import uuid
from typing import Any
from urllib.parse import urlencode

from benchmarks import webhook_load as harness

API_KEY = "benchmark-key"
SECRET = "benchmark-signature-secret"
PATH = "/sms/vonage/"


def handle(sender: str, body: str) -> str:
    """The application's work on one text, the same in both stacks."""
    return f"echo to {sender}: {body}"


# --- the two applications ------------------------------------------------------------------


def _gateway_app() -> Any:
    """An AsyncSmsConsumer calling `handle`, behind an SMSFromRouter."""
    from gateway import AsyncSmsConsumer

    class Handler(AsyncSmsConsumer):
        async def receive(self, body: str) -> None:
            handle(self.sender, body)

    return harness.sms_gateway_app(Handler.as_asgi())


gateway_application = harness.lazy_app(_gateway_app)
django_application = harness.lazy_app(harness.django_asgi)


@functools.cache
def _auth() -> Any:
    from vonage import Auth

    return Auth(api_key=API_KEY, signature_secret=SECRET, signature_method="sha256")


async def vonage_view(request: Any) -> Any:
    """The same handler as a plain async Django view."""
    from django.http import HttpResponse

    if request.method not in ("GET", "POST"):
        return HttpResponse(status=405)
    fields = request.POST.dict() if request.method == "POST" else request.GET.dict()
    if "sig" not in fields or not _auth().check_signature(dict(fields)):
        return HttpResponse(status=403)
    if not all(fields.get(name) for name in ("msisdn", "to", "messageId")):
        return HttpResponse(status=400)
    handle("+" + fields["msisdn"], fields.get("text", ""))
    return HttpResponse(status=204)


# --- the load ------------------------------------------------------------------------------


def signed_request(port: int, n: int) -> bytes:
    fields = {
        "msisdn": f"4477009{n % 1000:05d}",
        "to": "447700900001",
        "messageId": uuid.uuid4().hex[:16].upper(),
        "text": f"hello {n}",
        "type": "text",
        "keyword": "HELLO",
        "api-key": API_KEY,
        "message-timestamp": "2026-12-03 06:00:00",
        "timestamp": str(int(time.time())),
        "nonce": uuid.uuid4().hex,
    }
    fields["sig"] = _auth().sign_params(dict(fields))
    body = urlencode(fields).encode()
    return harness.post(port, PATH, body, harness.FORM)


def answered(head: bytes, body: bytes, n: int) -> bool:
    return head.startswith(b"HTTP/1.1 204")


BENCH = harness.WebhookBench(
    "benchmarks.sms_vonage_settings", "benchmarks.sms_vonage", signed_request, answered
)

if __name__ == "__main__":
    harness.main(BENCH, __doc__)
