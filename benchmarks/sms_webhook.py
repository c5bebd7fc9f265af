"""Twilio SMS webhook: signed requests/s into a handler that replies, ours vs a Django view.

Run from the project root:  .venv/bin/python benchmarks/sms_webhook.py [--seconds 8]

Servers, each started here as a subprocess on a free port, one at a time, same settings:
- gateway: `python -m gateway run` with the Twilio adapter (signature check with twilio's
           RequestValidator, MessageSid dedup, per-sender ordering) into an SMSFromRouter and an
           AsyncSmsConsumer that replies; the reply is answered as TwiML;
- django:  `uvicorn` (httptools, uvloop) serving Django's ASGI handler with a plain async view
           doing the same: RequestValidator check, read the form, answer MessagingResponse TwiML.
The load generator keeps 50 keep-alive connections busy with raw HTTP/1.1: each request is a
fresh Twilio form (new MessageSid, one of 1,000 senders) signed with RequestValidator; a
response counts only when it is 200 with the expected <Message>. The runs are
`benchmarks.webhook_load`'s.
"""

from __future__ import annotations

import functools
import uuid
from typing import Any
from urllib.parse import urlencode

from benchmarks import webhook_load as harness

TOKEN = "benchmark-auth-token"
PATH = "/sms/twilio/"


# --- the two applications ------------------------------------------------------------------


def _gateway_app() -> Any:
    """An echoing AsyncSmsConsumer behind an SMSFromRouter."""
    from gateway import AsyncSmsConsumer

    class Echo(AsyncSmsConsumer):
        async def receive(self, body: str) -> None:
            await self.reply(f"echo: {body}")

    return harness.sms_gateway_app(Echo.as_asgi())


gateway_application = harness.lazy_app(_gateway_app)
django_application = harness.lazy_app(harness.django_asgi)


async def twilio_view(request: Any) -> Any:
    """The same handler as a plain async Django view."""
    from django.http import HttpResponse
    from twilio.twiml.messaging_response import MessagingResponse

    if request.method != "POST":
        return HttpResponse(status=405)
    signature = request.headers.get("X-Twilio-Signature", "")
    if not _validator().validate(request.build_absolute_uri(), request.POST.dict(), signature):
        return HttpResponse(status=403)
    if not request.POST.get("From") or not request.POST.get("MessageSid"):
        return HttpResponse(status=400)
    response = MessagingResponse()
    response.message(f"echo: {request.POST.get('Body', '')}")
    answer = HttpResponse(str(response), content_type="text/xml; charset=utf-8")
    answer["Content-Length"] = str(len(answer.content))  # as CommonMiddleware would
    return answer


@functools.cache
def _validator() -> Any:
    from twilio.request_validator import RequestValidator

    return RequestValidator(TOKEN)


# --- the load ------------------------------------------------------------------------------


def signed_request(port: int, n: int) -> bytes:
    form = {
        "MessageSid": "SM" + uuid.uuid4().hex,
        "AccountSid": "AC" + "0" * 32,
        "From": f"+4477009{n % 1000:05d}",
        "To": "+15005550006",
        "FromCountry": "GB",
        "Body": f"hello {n}",
        "NumMedia": "0",
    }
    body = urlencode(form).encode()
    signature = _validator().compute_signature(f"http://127.0.0.1:{port}{PATH}", form)
    return harness.post(port, PATH, body, harness.FORM, X_Twilio_Signature=signature)


def answered(head: bytes, body: bytes, n: int) -> bool:
    return head.startswith(b"HTTP/1.1 200") and f"echo: hello {n}".encode() in body


BENCH = harness.WebhookBench(
    "benchmarks.sms_settings", "benchmarks.sms_webhook", signed_request, answered
)

if __name__ == "__main__":
    harness.main(BENCH, __doc__)
