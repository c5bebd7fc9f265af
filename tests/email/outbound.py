"""Where replies go: a real outbound SMTP server (aiosmtpd's Controller), or a closed port.

Django's SMTP ``EMAIL_BACKEND`` is pointed at one or the other through pytest-django's
``settings`` fixture, as a project's settings would point it at its mail relay.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.integration.support import free_port

SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"


@dataclass
class Relay:
    """The outbound server's handler: answers 451 to the first `fail_next` DATA commands,
    and to those whose number (1-based) is in `refuse`."""

    fail_next: int = 0
    refuse: frozenset[int] = frozenset()
    attempts: int = 0
    received: list[EmailMessage] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.attempts += 1
        if self.attempts in self.refuse:
            return "451 4.3.0 Relay busy, try again later"
        if self.fail_next > 0:
            self.fail_next -= 1
            return "451 4.3.0 Relay busy, try again later"
        parsed = message_from_bytes(envelope.content or b"", policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.received.append(parsed)
        return "250 2.0.0 Queued"

    def bodies(self) -> list[str]:
        return [str(mail.get_content()).strip() for mail in self.received]


@contextmanager
def running_relay(
    fail_next: int = 0, refuse: frozenset[int] = frozenset()
) -> Iterator[tuple[Relay, int]]:
    """A real SMTP server on 127.0.0.1 (its own thread); yields its handler and port."""
    relay = Relay(fail_next=fail_next, refuse=refuse)
    port = free_port()
    controller = Controller(relay, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield relay, port
    finally:
        controller.stop()


@contextmanager
def closed_port() -> Iterator[int]:
    """A port bound on 127.0.0.1 that does not listen: connecting to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


def send_replies_to(settings: Any, port: int) -> None:
    """Django's SMTP backend, to 127.0.0.1:`port` (pytest-django's `settings` fixture)."""
    settings.EMAIL_BACKEND = SMTP_BACKEND
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = port
    settings.EMAIL_TIMEOUT = 10
