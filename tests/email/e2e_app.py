"""The app `gateway run` serves in the SMTP end-to-end test: a ticket desk that fails once."""

from __future__ import annotations

import os
from email.message import EmailMessage
from pathlib import Path

from gateway.consumers.email import EmailConsumer
from routers import EmailToRouter, ProtocolTypeRouter, address


class TicketDesk(EmailConsumer):
    """Appends the subject to a log file; fails while the fail-marker file exists."""

    def receive(self, message: EmailMessage) -> None:
        marker = Path(os.environ["GATEWAY_EMAIL_FAIL_MARKER"])
        if marker.exists():
            marker.unlink()
            raise RuntimeError("failing once, as the test asked")
        with Path(os.environ["GATEWAY_EMAIL_LOG"]).open("a") as log:
            log.write(f"{self.scope['recipient']} {self.subject}\n")
        self.reply("Ticket opened.")


application = ProtocolTypeRouter(
    {"email": EmailToRouter([address(r"support@example\.com", TicketDesk.as_asgi())])}
)
