"""From a fetched IMAP message to the shared email intake, and back to what to do with it."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from email.message import Message as MimeMessage
from email.utils import getaddresses
from typing import Any, Literal

from gateway import email as mail
from gateway.adapters import AdapterContext
from gateway.email_store import load_mail_store
from gateway.pipeline import KeyedDispatcher
from protocol_adapters.email_common import EmailIntake, read_headers
from protocol_adapters.imap_session import ImapAccount

__all__ = ["ImapIntake", "Verdict", "envelope_sender", "route_recipient"]

logger = logging.getLogger("gateway.imap")

Verdict = Literal["done", "failed", "unrouted", "gone"]
"""done: flag or move it; failed: dead-lettered, leave it unseen; unrouted: leave it unseen;
gone: expunged before it could be fetched."""


def envelope_sender(headers: MimeMessage) -> str:
    """The scope's sender: the Return-Path the delivering server wrote, else the From address."""
    return_path = mail.header_text(headers, "Return-Path")
    if return_path is not None:
        addresses = [address for _, address in getaddresses([return_path]) if address]
        return addresses[0] if addresses else ""  # "<>": a bounce, the null sender
    return mail.sender_address(headers)


def route_recipient(
    headers: MimeMessage, account: ImapAccount, accepts: Callable[[str], bool]
) -> tuple[str, bool]:
    """The address to route by, and whether a route accepts it.

    The topmost of the account's RECIPIENT_HEADERS (written by the delivering server) wins
    when a route takes it, so a catch-all mailbox routes by the original recipient; otherwise
    the account's RECIPIENT.
    """
    for name in account.recipient_headers:
        addresses = [a for _, a in getaddresses([mail.header_text(headers, name) or ""]) if a]
        if addresses and accepts(addresses[0].lower()):
            return addresses[0].lower(), True
    return account.recipient, accepts(account.recipient)


class ImapIntake:
    """The adapter's `EmailIntake` and dispatcher: one lane per mailbox keeps its order."""

    def __init__(self, context: AdapterContext, values: Mapping[str, Any]) -> None:
        """`values`: the adapter's OPTIONS as IMAP_OPTIONS parsed them."""
        self.dispatcher = KeyedDispatcher(
            "email",
            max_in_flight=int(values["MAX_IN_FLIGHT"]),
            retry=values["RETRY"],
            dead_letter=context.dead_letter,
            metrics=context.metrics,
        )
        self.intake = EmailIntake(
            context.app,
            adapter=context.name,
            source="imap",
            dispatcher=self.dispatcher,
            store=load_mail_store(values["STORE"]),
            app_timeout=float(values["APP_TIMEOUT"]),
            state=context.state,
        )

    async def deliver(
        self, account: ImapAccount, uidvalidity: int, uid: int, raw: bytes
    ) -> Verdict:
        """Run the application on one message (retried, then dead-lettered) and say what's next."""
        headers = read_headers(raw)
        recipient, routed = route_recipient(headers, account, self.intake.accepts)
        if not routed:
            # Logged once: the checkpoint moves past it, so it is not looked at again.
            logger.warning(
                "imap %s: no route accepts %s; message UID %d left unseen",
                account.url,
                recipient,
                uid,
            )
            return "unrouted"
        delivery = await self.intake.deliver(
            raw,
            sender=envelope_sender(headers),
            recipient=recipient,
            key=account.key,
            recipients=[recipient],
            mailbox=account.mailbox,
            uid=uid,
            uidvalidity=uidvalidity,
        )
        if delivery.final:
            return "done"
        logger.error(
            "imap %s: UID %d failed %d times, dead-lettered and left unseen",
            account.url,
            uid,
            delivery.attempts,
        )
        return "failed"

    async def aclose(self, timeout: float) -> None:
        """Finish in-flight deliveries and write the pending InboundEmail records."""
        await self.intake.aclose(timeout)
