"""What the webhook adapter needs from a parsed message: stable raw bytes, sender, recipients.

A provider that posts the message's fields rather than its MIME (Postmark, Brevo, Mailjet,
SendGrid's default, Mailgun's parsed form) is rebuilt as a new MIME message, and Python picks
a random multipart boundary each time one is written. The same webhook posted again must give
the same bytes, since the dedup key of the `InboundMailStore` is their digest with the
Message-ID: `message_bytes` derives every boundary it has to choose from the message's own
headers and content instead (not from the request, whose form boundary changes on a retry).
Such a rebuilt message also holds its attachments as raw bytes without a transfer encoding
(anymail's ``construct_attachment``), which a MIME writer would alter (bare CRs become line
ends): they are base64-encoded first, as a mail client would have sent them.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from email.message import Message
from email.utils import getaddresses

__all__ = ["message_bytes", "recipients", "sender"]


def message_bytes(message: Message) -> bytes:
    """The message as RFC 5322 bytes, the same each time the provider posts the same message."""
    seed = _content_digest(message)
    for index, part in enumerate(message.walk()):
        if part.is_multipart() and part.get_boundary() is None:
            token = hashlib.sha256(seed + index.to_bytes(4, "big")).hexdigest()[:40]
            part.set_boundary(f"=_{token}")
        elif _unencoded_binary(part):
            _encode_base64(part)
    try:
        return message.as_bytes()
    except UnicodeEncodeError:  # 8-bit text parsed from a str: keep it as UTF-8
        return message.as_string().encode("utf-8", "surrogateescape")


def _content_digest(message: Message) -> bytes:
    digest = hashlib.sha256()
    for part in message.walk():
        for name, value in part.items():
            digest.update(f"{name}: {value}\n".encode("utf-8", "surrogateescape"))
        payload = part.get_payload()
        if isinstance(payload, str):
            digest.update(payload.encode("utf-8", "surrogateescape"))
    return digest.digest()


def _unencoded_binary(part: Message) -> bool:
    """A leaf part holding bytes (kept as surrogate-escaped text) with no transfer encoding."""
    payload = part.get_payload()
    if "Content-Transfer-Encoding" in part or not isinstance(payload, str):
        return False
    return "\r" in payload or not payload.isascii()


def _encode_base64(part: Message) -> None:
    payload = part.get_payload(decode=True)  # no transfer encoding: the bytes as held
    assert isinstance(payload, bytes)  # a leaf part (_unencoded_binary checked it)
    part["Content-Transfer-Encoding"] = "base64"
    part.set_payload(base64.encodebytes(payload).decode("ascii"))


def sender(message: Message, envelope_sender: str | None) -> str:
    """The envelope sender the provider reported, else the From address, else ``""``."""
    if envelope_sender:
        return envelope_sender.strip().strip("<>")
    found = _addresses(message.get_all("From", []))
    return found[0] if found else ""


def recipients(message: Message, envelope_recipients: Iterable[str]) -> list[str]:
    """The envelope recipients the provider reported, else every To and Cc address, in order."""
    given = [address.strip().strip("<>") for address in envelope_recipients if address]
    if given:
        return list(dict.fromkeys(given))
    headers = [*message.get_all("To", []), *message.get_all("Cc", [])]
    return list(dict.fromkeys(_addresses(headers)))


def _addresses(values: Iterable[object]) -> list[str]:
    return [address for _, address in getaddresses([str(value) for value in values]) if address]
