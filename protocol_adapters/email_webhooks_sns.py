"""Amazon SNS message signatures, which anymail does not check (its SES view trusts basic auth).

SNS signs every HTTP/S notification with the private key of a certificate it publishes at
``SigningCertURL``, over the message's fields in a fixed order, RSA with SHA-1
(``SignatureVersion`` 1) or SHA-256 (2), as "Verifying the signatures of Amazon SNS messages"
in Amazon's documentation lays out. `SnsVerifier` accepts a certificate URL only when it
matches the allowed pattern (Amazon's SNS hosts, over HTTPS), fetches each certificate once,
and raises `SnsSignatureError` for anything that is not signed by it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
import urllib.request
from collections.abc import Mapping
from typing import Any, Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from protocol_adapters.email_webhooks_options import AMAZON_CERT_URL

__all__ = ["SnsCertificateUnavailable", "SnsSignatureError", "SnsVerifier"]

_SIGNED: Final = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": (
        "Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"
    ),
}  # fmt: skip
_SIGNED["UnsubscribeConfirmation"] = _SIGNED["SubscriptionConfirmation"]
_HASHES: Final = {"1": hashes.SHA1, "2": hashes.SHA256}
_MAX_CERTIFICATES: Final = 32


class SnsSignatureError(Exception):
    """The request is not an SNS message signed by an allowed certificate."""


class SnsCertificateUnavailable(Exception):
    """The signing certificate could not be fetched (the sender should retry)."""


class SnsVerifier:
    """Checks SNS signatures against certificates from URLs matching `cert_url`."""

    def __init__(self, cert_url: str = AMAZON_CERT_URL, timeout: float = 10.0) -> None:
        self.cert_url = re.compile(cert_url)
        self.timeout = timeout
        self._keys: dict[str, rsa.RSAPublicKey] = {}

    async def verify(self, body: bytes) -> None:
        """Return when `body` is a correctly signed SNS message; raise otherwise."""
        message = _message(body)
        url = str(message.get("SigningCertURL", ""))
        if not self.cert_url.fullmatch(url):
            raise SnsSignatureError(f"SigningCertURL {url!r} is not an allowed SNS certificate")
        key = self._keys.get(url) or await self._fetch(url)
        algorithm = _HASHES.get(str(message.get("SignatureVersion")))
        if algorithm is None:
            raise SnsSignatureError(f"unknown SignatureVersion {message.get('SignatureVersion')!r}")
        try:
            signature = base64.b64decode(str(message.get("Signature", "")), validate=True)
            key.verify(signature, _string_to_sign(message), padding.PKCS1v15(), algorithm())
        except (InvalidSignature, binascii.Error) as exc:
            raise SnsSignatureError("the SNS signature does not match the message") from exc

    async def _fetch(self, url: str) -> rsa.RSAPublicKey:
        try:
            pem = await asyncio.to_thread(self._download, url)
            key = x509.load_pem_x509_certificate(pem).public_key()
        except OSError as exc:
            raise SnsCertificateUnavailable(f"could not fetch {url}: {exc!r}") from exc
        except ValueError as exc:
            raise SnsSignatureError(f"{url} is not a PEM certificate") from exc
        if not isinstance(key, rsa.RSAPublicKey):
            raise SnsSignatureError(f"{url} does not hold an RSA key")
        if len(self._keys) >= _MAX_CERTIFICATES:
            self._keys.clear()
        self._keys[url] = key
        return key

    def _download(self, url: str) -> bytes:
        # `url` matched the allowed pattern (by default https on Amazon's SNS hosts only).
        with urllib.request.urlopen(url, timeout=self.timeout) as response:
            data: bytes = response.read(1024 * 1024)
        return data


def _message(body: bytes) -> Mapping[str, Any]:
    try:
        message = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SnsSignatureError("the body is not an SNS message (not JSON)") from exc
    if not isinstance(message, dict) or message.get("Type") not in _SIGNED:
        raise SnsSignatureError("the body is not an SNS message (no known Type)")
    return message


def _string_to_sign(message: Mapping[str, Any]) -> bytes:
    fields = _SIGNED[str(message["Type"])]
    text = "".join(f"{name}\n{message[name]}\n" for name in fields if name in message)
    return text.encode("utf-8")
