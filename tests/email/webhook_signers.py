"""Requests signed as each mail provider signs its inbound webhook, and OPTIONS to match.

Every `sign_<provider>` builds the request that provider posts for one message, authenticated
the way its documentation (and anymail) says: basic auth in the URL for Postmark, SendGrid,
Mailjet, SparkPost, Brevo and Amazon SES, whose SNS messages are also signed as SNS signs
them (RSA SHA-256, the certificate served from 127.0.0.1); Mailgun's HMAC-SHA256 of
timestamp + token; MailerSend's and Mailtrap's HMAC-SHA256 of the body; Svix's signature
(with the svix package) for Resend; Postal's RSA-SHA1; Mandrill's HMAC-SHA1 of the URL and
the sorted fields.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from svix.webhooks import Webhook

if TYPE_CHECKING:
    from tests.email.webhook_support import ProviderApi

BACKEND = "protocol_adapters.email_webhooks.EmailWebhookAdapter"
BASIC = "mailhook:s3cret-pass"
SIGNING_KEY = "key-0123456789abcdef"
SVIX_SECRET = "whsec_" + base64.b64encode(b"resend-test-secret-0123456789").decode()
API_KEY = "api-key-for-tests"
PDF = b"%PDF-1.4\n" + bytes(range(256)) * 8
_POSTAL_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
POSTAL_PUBLIC_KEY = "".join(
    _POSTAL_KEY.public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
    .splitlines()[1:-1]
)


SNS_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
SNS_CERT_PATH = "/sns/SimpleNotificationService-0123456789abcdef.pem"


def sns_certificate() -> bytes:
    """A self-signed certificate for `SNS_KEY`, served in place of Amazon's."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.us-east-1.amazonaws.com")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(SNS_KEY.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(SNS_KEY, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM)


def postal_signature(body: bytes) -> str:
    """Postal's signature: RSA-SHA1 (PKCS#1 v1.5) of the body, base64."""
    signature = _POSTAL_KEY.sign(body, padding.PKCS1v15(), hashes.SHA1())
    return base64.b64encode(signature).decode()


def svix_signature(msg_id: str, stamp: int, body: bytes) -> str:
    """Svix's signature header value (Resend), computed by the svix package."""
    return Webhook(SVIX_SECRET).sign(msg_id, datetime.fromtimestamp(stamp, UTC), body.decode())


def mail(
    subject: str = "Printer on fire",
    to: str = "support@example.com",
    sender: str = "alice@customer.test",
    attachment: bytes | None = PDF,
) -> EmailMessage:
    """A message with a PDF attachment and a fresh Message-ID."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = f"<{uuid.uuid4().hex}@customer.test>"
    message.set_content("Please help.\n")
    if attachment is not None:
        message.add_attachment(attachment, "application", "pdf", filename="report.pdf")
    return message


@dataclass
class Post:
    """One webhook request as the provider sends it."""

    path: str
    headers: dict[str, str] = field(default_factory=dict)
    content: bytes | None = None
    data: dict[str, str] | None = None
    files: dict[str, tuple[str | None, bytes, str]] | None = None
    auth: tuple[str, str] | None = None


def _basic() -> tuple[str, str]:
    user, password = BASIC.split(":")
    return user, password


def _json(path: str, payload: Any, **headers: str) -> Post:
    body = json.dumps(payload).encode()
    return Post(path, {"content-type": "application/json", **headers}, body, auth=_basic())


# --- one signer per provider -------------------------------------------------------------------


def sign_postmark(message: EmailMessage, event_id: str | None = None) -> Post:
    attachments = [
        {
            "Name": part.get_filename(),
            "Content": base64.b64encode(part.get_content()).decode(),
            "ContentType": part.get_content_type(),
        }
        for part in message.iter_attachments()
    ]
    text = message.get_body(("plain",))
    return _json(
        "/email/postmark/",
        {
            "FromFull": {"Email": message["From"], "Name": ""},
            "ToFull": [{"Email": message["To"], "Name": ""}],
            "OriginalRecipient": message["To"],
            "Subject": message["Subject"],
            "MessageID": event_id or str(uuid.uuid4()),
            "TextBody": text.get_content() if text is not None else "",
            "Headers": [{"Name": "Message-ID", "Value": message["Message-ID"]}],
            "Attachments": attachments,
        },
    )


def mailgun_signature(timestamp: str, token: str, key: str = SIGNING_KEY) -> str:
    """Mailgun's documented signature: HMAC-SHA256 of timestamp + token with the signing key."""
    return hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()


def sign_mailgun(message: EmailMessage, event_id: str | None = None) -> Post:
    token = event_id or uuid.uuid4().hex * 2
    timestamp = str(int(time.time()))
    headers = [
        [name, str(value)]
        for name, value in message.items()
        if name.lower() not in ("content-type", "mime-version")
    ]
    files = {
        f"attachment-{n}": (
            part.get_filename() or "file",
            part.get_content(),
            part.get_content_type(),
        )
        for n, part in enumerate(message.iter_attachments(), 1)
    }
    text = message.get_body(("plain",))
    data = {
        "recipient": message["To"],
        "sender": message["From"],
        "subject": message["Subject"],
        "body-plain": text.get_content() if text is not None else "",
        "message-headers": json.dumps(headers),
        "attachment-count": str(len(files)),
        "timestamp": timestamp,
        "token": token,
        "signature": mailgun_signature(timestamp, token),
    }
    return Post("/email/mailgun/", data=data, files=files or None)


def sns_sign(sns: dict[str, str]) -> dict[str, str]:
    """`sns` signed as Amazon SNS signs (SignatureVersion 2: RSA SHA-256 over the fields)."""
    fields = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
    signed = "".join(f"{name}\n{sns[name]}\n" for name in fields if name in sns).encode()
    signature = SNS_KEY.sign(signed, padding.PKCS1v15(), hashes.SHA256())
    return {**sns, "SignatureVersion": "2", "Signature": base64.b64encode(signature).decode()}


def sign_amazon_ses(
    message: EmailMessage, event_id: str | None = None, api: ProviderApi | None = None
) -> Post:
    assert api is not None  # serves the SNS signing certificate
    notification = {
        "notificationType": "Received",
        "mail": {
            "source": message["From"],
            "messageId": event_id or uuid.uuid4().hex,
            "timestamp": "2026-12-03T06:00:00.000Z",
            "destination": [message["To"]],
        },
        "receipt": {
            "recipients": [message["To"]],
            "spamVerdict": {"status": "PASS"},
            "action": {"type": "SNS", "encoding": "BASE64"},
        },
        "content": base64.b64encode(message.as_bytes()).decode(),
    }
    sns_id = str(uuid.uuid4())
    sns = {
        "Type": "Notification",
        "MessageId": sns_id,
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:inbound",
        "Message": json.dumps(notification),
        "Timestamp": "2026-12-03T06:00:00.000Z",
        "SigningCertURL": api.url + SNS_CERT_PATH,
    }
    headers = {"x-amz-sns-message-type": "Notification", "x-amz-sns-message-id": sns_id}
    return _json("/email/amazon_ses/", sns_sign(sns), **headers)


def sign_sendgrid(message: EmailMessage, event_id: str | None = None) -> Post:
    envelope = json.dumps({"from": message["From"], "to": [message["To"]]})
    # multipart/form-data fields without file names, as SendGrid posts ("Send Raw" enabled)
    fields = {"email": message.as_string(), "envelope": envelope, "spam_score": "0.1"}
    files = {name: (None, value.encode(), "text/plain") for name, value in fields.items()}
    return Post("/email/sendgrid/", files=files, auth=_basic())


def sign_mailjet(message: EmailMessage, event_id: str | None = None) -> Post:
    text = message.get_body(("plain",))
    payload: dict[str, Any] = {
        "Sender": message["From"],
        "Recipient": message["To"],
        "Headers": {
            "From": message["From"],
            "To": message["To"],
            "Subject": message["Subject"],
            "Message-ID": message["Message-ID"],
        },
        "Text-part": text.get_content() if text is not None else "",
        "Parts": [],
    }
    for n, part in enumerate(message.iter_attachments(), 1):
        ref = f"Attachment{n}"
        payload["Parts"].append(
            {
                "ContentRef": ref,
                "Headers": {
                    "Content-Type": part.get_content_type(),
                    "Content-Disposition": f'attachment; filename="{part.get_filename()}"',
                },
            }
        )
        payload[ref] = base64.b64encode(part.get_content()).decode()
    return _json("/email/mailjet/", payload)


def sign_sparkpost(message: EmailMessage, event_id: str | None = None) -> Post:
    relay = {
        "content": {"email_rfc822": message.as_string(), "email_rfc822_is_base64": False},
        "msg_from": message["From"],
        "rcpt_to": message["To"],
        "protocol": "smtp",
    }
    return _json("/email/sparkpost/", [{"msys": {"relay_message": relay}}])


def sign_mailersend(message: EmailMessage, event_id: str | None = None) -> Post:
    body = json.dumps(
        {
            "type": "inbound.message",
            "data": {
                "id": event_id or uuid.uuid4().hex,
                "created_at": "2026-12-03T06:00:00Z",
                "raw": message.as_string(),
                "sender": {"email": message["From"]},
                "recipients": {"rcptTo": [{"email": message["To"]}]},
            },
        }
    ).encode()
    signature = hmac.new(SIGNING_KEY.encode(), body, hashlib.sha256).hexdigest()
    headers = {"content-type": "application/json", "signature": signature}
    return Post("/email/mailersend/", headers, body)


def sign_postal(message: EmailMessage, event_id: str | None = None) -> Post:
    body = json.dumps(
        {
            "id": event_id or uuid.uuid4().int % 10**9,
            "rcpt_to": message["To"],
            "mail_from": message["From"],
            "base64": True,
            "message": base64.b64encode(message.as_bytes()).decode(),
        }
    ).encode()
    headers = {"content-type": "application/json", "x-postal-signature": postal_signature(body)}
    return Post("/email/postal/", headers, body)


def mandrill_signature(url: str, data: Mapping[str, str], key: str = SIGNING_KEY) -> str:
    """Mandrill's documented signature: HMAC-SHA1 of the URL and each sorted key + value."""
    signed = url + "".join(key_ + data[key_] for key_ in sorted(data))
    return base64.b64encode(hmac.new(key.encode(), signed.encode(), hashlib.sha1).digest()).decode()


MANDRILL_URL = "https://example.com/email/mandrill/"


def sign_mandrill(message: EmailMessage, event_id: str | None = None) -> Post:
    events = [
        {
            "event": "inbound",
            "ts": int(time.time()),
            "msg": {"raw_msg": message.as_string(), "email": message["To"]},
        }
    ]
    data = {"mandrill_events": json.dumps(events)}
    headers = {"x-mandrill-signature": mandrill_signature(MANDRILL_URL, data)}
    return Post("/email/mandrill/", headers, data=data)


def sign_brevo(
    message: EmailMessage, event_id: str | None = None, api: ProviderApi | None = None
) -> Post:
    assert api is not None
    attachments = []
    for part in message.iter_attachments():
        token = api.add_file(part.get_content(), part.get_content_type())
        attachments.append(
            {
                "Name": part.get_filename(),
                "ContentType": part.get_content_type(),
                "DownloadToken": token,
            }
        )
    text = message.get_body(("plain",))
    item = {
        "Uuid": [event_id or str(uuid.uuid4())],
        "Headers": {
            "From": message["From"],
            "To": message["To"],
            "Subject": message["Subject"],
            "Message-ID": message["Message-ID"],
            "Delivered-To": message["To"],
        },
        "RawTextBody": text.get_content() if text is not None else "",
        "Attachments": attachments,
    }
    return _json("/email/brevo/", {"items": [item]})


def sign_resend(
    message: EmailMessage, event_id: str | None = None, api: ProviderApi | None = None
) -> Post:
    assert api is not None
    email_id = api.add_email(message.as_bytes())
    body = json.dumps(
        {
            "type": "email.received",
            "created_at": "2026-12-03T06:00:00.000Z",
            "data": {"email_id": email_id},
        }
    ).encode()
    msg_id = event_id or f"msg_{uuid.uuid4().hex}"
    stamp = int(time.time())
    headers = {
        "content-type": "application/json",
        "svix-id": msg_id,
        "svix-timestamp": str(stamp),
        "svix-signature": svix_signature(msg_id, stamp, body),
    }
    return Post("/email/resend/", headers, body)


def sign_mailtrap(
    message: EmailMessage, event_id: str | None = None, api: ProviderApi | None = None
) -> Post:
    assert api is not None
    message_id = api.add_email(message.as_bytes())
    body = json.dumps(
        {
            "events": [
                {
                    "event": "inbound.message_received",
                    "inbox_id": 42,
                    "message_id": event_id or message_id,
                    "timestamp": int(time.time() * 1000),
                }
            ]
        }
    ).encode()
    signature = hmac.new(SIGNING_KEY.encode(), body, hashlib.sha256).hexdigest()
    return Post(
        "/email/mailtrap/",
        {"content-type": "application/json", "mailtrap-signature": signature},
        body,
    )


SIGNERS: dict[str, Any] = {
    "amazon_ses": sign_amazon_ses,
    "brevo": sign_brevo,
    "mailersend": sign_mailersend,
    "mailgun": sign_mailgun,
    "mailjet": sign_mailjet,
    "mailtrap": sign_mailtrap,
    "mandrill": sign_mandrill,
    "postal": sign_postal,
    "postmark": sign_postmark,
    "resend": sign_resend,
    "sendgrid": sign_sendgrid,
    "sparkpost": sign_sparkpost,
}
FETCHING = frozenset({"brevo", "resend", "mailtrap"})
#: The signers that need the `ProviderApi` (content to fetch, or SNS's certificate).
NEEDS_API = FETCHING | {"amazon_ses"}
