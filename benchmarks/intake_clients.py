"""Real clients for every intake, one exchange each, for floods and probes (intake_flood.py and
tests/server/test_intake_flood.py).

Each exchange opens its own connection and returns an `Exchange`: what the intake answered
(``ok``; ``busy``: 503, 421/451 or CONNACK 3; ``refused``: CONNACK 5; ``error``: anything else,
including a connection closed without an answer), the seconds it took and the id the
application sees (an SMS's MessageSid, a mail's Message-ID) when one was sent.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import urlencode

from twilio.request_validator import RequestValidator

__all__ = [
    "MAIL_SIGNING_KEY",
    "SMS_TOKEN",
    "Exchange",
    "Intakes",
    "http_get",
    "mail_webhook",
    "mqtt_login",
    "sms_webhook",
    "smtp_mail",
]

SMS_TOKEN: Final = "intake-flood-auth-token"
SMS_PATH: Final = "/sms/twilio/"
MAIL_SIGNING_KEY: Final = "key-intake-flood"
MAIL_PATH: Final = "/email/mailgun/"
HTTP_PATH: Final = "/ping/"
RECIPIENT: Final = "support@example.com"
TIMEOUT: Final = 30.0

Outcome = Literal["ok", "busy", "refused", "error"]
_numbers = itertools.count()


@dataclass(frozen=True)
class Exchange:
    """One exchange with an intake: its outcome, seconds, and the id the app sees."""

    outcome: Outcome
    seconds: float
    sent_id: str = ""
    detail: str = ""


@dataclass(frozen=True)
class Intakes:
    """Where a gateway listens."""

    http: int
    mqtt: int
    smtp: int


async def _http(port: int, request: bytes) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        return int(head.split(b" ", 2)[1]), head
    finally:
        writer.close()


def _post(port: int, path: str, form: dict[str, str], **headers: str) -> bytes:
    body = urlencode(form).encode()
    lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    lines += ["Content-Type: application/x-www-form-urlencoded"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _timed(exchange: Callable[[], Awaitable[tuple[Outcome, str]]], sent: str) -> Exchange:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(TIMEOUT):
            outcome, detail = await exchange()
    except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
        outcome, detail = "error", repr(exc)
    return Exchange(outcome, time.perf_counter() - started, sent, detail)


def _by_status(status: int) -> Outcome:
    return "ok" if status == 200 else "busy" if status == 503 else "error"


async def http_get(port: int) -> Exchange:
    """GET /ping/ (the application's HTTP branch)."""
    request = f"GET {HTTP_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"

    async def exchange() -> tuple[Outcome, str]:
        status, head = await _http(port, request.encode())
        return _by_status(status), head.split(b"\r\n", 1)[0].decode()

    return await _timed(exchange, "")


async def sms_webhook(port: int) -> Exchange:
    """One signed Twilio inbound SMS; `sent_id` its MessageSid."""
    sid = "SM" + uuid.uuid4().hex
    n = next(_numbers)
    form = {
        "MessageSid": sid,
        "AccountSid": "AC" + "0" * 32,
        "From": f"+4477009{n % 100000:05d}",
        "To": "+15005550006",
        "Body": f"reading {n}",
        "NumMedia": "0",
    }
    url = f"http://127.0.0.1:{port}{SMS_PATH}"
    signature = RequestValidator(SMS_TOKEN).compute_signature(url, form)
    request = _post(port, SMS_PATH, form, **{"X-Twilio-Signature": signature})

    async def exchange() -> tuple[Outcome, str]:
        status, head = await _http(port, request)
        return _by_status(status), head.split(b"\r\n", 1)[0].decode()

    return await _timed(exchange, sid)


async def mail_webhook(port: int) -> Exchange:
    """One signed Mailgun inbound message; `sent_id` its Message-ID."""
    message_id = f"<{uuid.uuid4().hex}@flood.test>"
    token, timestamp = uuid.uuid4().hex * 2, str(int(time.time()))
    signature = hmac.new(
        MAIL_SIGNING_KEY.encode(), f"{timestamp}{token}".encode(), hashlib.sha256
    ).hexdigest()
    headers = [["From", "alice@customer.test"], ["To", RECIPIENT], ["Subject", "flood"]]
    headers.append(["Message-ID", message_id])
    form = {
        "recipient": RECIPIENT,
        "sender": "alice@customer.test",
        "subject": "flood",
        "body-plain": "a reading",
        "message-headers": json.dumps(headers),
        "attachment-count": "0",
        "timestamp": timestamp,
        "token": token,
        "signature": signature,
    }
    request = _post(port, MAIL_PATH, form)

    async def exchange() -> tuple[Outcome, str]:
        status, head = await _http(port, request)
        return _by_status(status), head.split(b"\r\n", 1)[0].decode()

    return await _timed(exchange, message_id)


async def smtp_mail(port: int) -> Exchange:
    """One mail over SMTP, connect to QUIT; `sent_id` its Message-ID."""
    message_id = f"<{uuid.uuid4().hex}@flood.test>"
    mail = (
        f"From: alice@customer.test\r\nTo: {RECIPIENT}\r\nSubject: flood\r\n"
        f"Message-ID: {message_id}\r\n\r\na reading\r\n"
    )

    async def exchange() -> tuple[Outcome, str]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            return await _smtp_session(reader, writer, mail)
        finally:
            writer.close()

    return await _timed(exchange, message_id)


async def _smtp_session(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, mail: str
) -> tuple[Outcome, str]:
    async def reply() -> str:
        line = await reader.readline()
        while line[3:4] == b"-":
            line = await reader.readline()
        if not line:
            raise ConnectionError("closed without a reply")
        return line.decode().strip()

    async def command(text: str) -> str:
        writer.write(text.encode() + b"\r\n")
        return await reply()

    greeting = await reply()
    if not greeting.startswith("220"):
        return ("busy" if greeting.startswith("421") else "error"), greeting
    for text in ("EHLO flood.test", "MAIL FROM:<alice@customer.test>", f"RCPT TO:<{RECIPIENT}>"):
        answer = await command(text)
        if not answer.startswith("2"):
            return "error", f"{text}: {answer}"
    answer = await command("DATA")
    if not answer.startswith("354"):
        return "error", answer
    answer = await command(mail.replace("\r\n.", "\r\n..") + ".")
    writer.write(b"QUIT\r\n")
    if answer.startswith("250"):
        return "ok", answer
    return ("busy" if answer[:3] in ("421", "451") else "error"), answer


def _mqtt_text(value: str) -> bytes:
    data = value.encode()
    return len(data).to_bytes(2, "big") + data


async def mqtt_login(
    port: int, username: str, password: str, local_host: str | None = None
) -> Exchange:
    """An MQTT 3.1.1 CONNECT with a password: CONNACK 0 ok, 3 busy, 5 refused."""
    client_id = f"{username}-{next(_numbers)}"
    body = _mqtt_text("MQTT") + bytes([4, 0xC2]) + (60).to_bytes(2, "big")
    body += _mqtt_text(client_id) + _mqtt_text(username) + _mqtt_text(password)
    packet = bytes([0x10, len(body)]) + body
    local = (local_host, 0) if local_host is not None else None

    async def exchange() -> tuple[Outcome, str]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=local)
        try:
            writer.write(packet)
            code = (await reader.readexactly(4))[3]
            writer.write(b"\xe0\x00")  # DISCONNECT
        finally:
            writer.close()
        outcomes: dict[int, Outcome] = {0: "ok", 3: "busy", 5: "refused"}
        outcome = outcomes.get(code, "error")
        return outcome, f"CONNACK {code}"

    return await _timed(exchange, "")
