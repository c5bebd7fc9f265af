"""Inbound-mail webhooks: signed Mailgun posts/s into a consumer, ours vs anymail's own view.

Run from the project root:  .venv/bin/python benchmarks/email_webhook.py [--seconds 8]

Servers, each started here as a subprocess on a free port, one at a time, same settings:
- gateway: `python -m gateway run` with `protocol_adapters.email_webhooks.EmailWebhookAdapter`
           (PROVIDER mailgun: anymail's MailgunInboundWebhookView checks the signature and
           parses the post) into an EmailToRouter and an AsyncEmailConsumer that reads the
           subject and text; 200 only after it returned;
- django:  `uvicorn` (httptools, uvloop) serving Django's ASGI handler with anymail's
           MailgunInboundWebhookView at the same path and a receiver of anymail's ``inbound``
           signal doing the same reading (anymail's documented set-up).
The load generator keeps 50 keep-alive connections busy with raw HTTP/1.1: each request is
Mailgun's "forward" post of a fresh message (new Message-ID and token, raw MIME in
``body-mime``, multipart/form-data) signed with HMAC-SHA256 of timestamp + token, as Mailgun
documents; a response counts only when it is 200. The runs are `benchmarks.webhook_load`'s.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid

from benchmarks.email_webhook_settings import SIGNING_KEY
from benchmarks.webhook_load import WebhookBench, main, post

PATH = "/email/mailgun/"


# --- the load -------------------------------------------------------------------------------


def _mime(n: int) -> str:
    return (
        "From: Alice <alice@customer.test>\r\nTo: support@example.com\r\n"
        f"Subject: Ticket {n}\r\nMessage-ID: <{uuid.uuid4().hex}@customer.test>\r\n"
        "Date: Thu, 03 Dec 2026 06:00:00 +0000\r\nMIME-Version: 1.0\r\n"
        'Content-Type: text/plain; charset="utf-8"\r\n\r\n'
        f"Please help with ticket {n}.\r\n" + "The printer is on fire. " * 40 + "\r\n"
    )


def signed_request(port: int, n: int) -> bytes:
    token = uuid.uuid4().hex + uuid.uuid4().hex
    timestamp = str(int(time.time()))
    signature = hmac.new(
        SIGNING_KEY.encode(), f"{timestamp}{token}".encode(), hashlib.sha256
    ).hexdigest()
    fields = {
        "recipient": "support@example.com",
        "sender": "alice@customer.test",
        "timestamp": timestamp,
        "token": token,
        "signature": signature,
        "body-mime": _mime(n),
    }
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in fields.items()
    ]
    body = ("".join(parts) + f"--{boundary}--\r\n").encode()
    return post(port, PATH, body, f"multipart/form-data; boundary={boundary}")


def answered(head: bytes, body: bytes, n: int) -> bool:
    return head.startswith(b"HTTP/1.1 200")


BENCH = WebhookBench(
    "benchmarks.email_webhook_settings",
    "benchmarks.email_webhook_apps",
    signed_request,
    answered,
    unit="webhooks/s",
    peer="anymail's view",
)

if __name__ == "__main__":
    main(BENCH, __doc__)
