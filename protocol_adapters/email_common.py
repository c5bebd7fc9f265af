"""The intake both email adapters share: store, dedup, run the app, report how it went.

An adapter (SMTP, IMAP) hands `EmailIntake.deliver` the raw bytes and the envelope of one
message for one recipient. The intake skips it when the store (`InboundMailStore`, named by
the adapter's ``STORE`` option) says that recipient already had it *handled*, runs the
application through the adapter's `KeyedDispatcher` (`gateway.email_run.run_email_app`),
records the outcome with the raw bytes and answers with a `Delivery`: what the adapter should
tell the sender (SMTP code) or do with the message (IMAP: flag it or not). Recipients are
checked against the router of the application's email branch (`gateway.routes.find_branch`).
``email.send`` events are sent through Django's email backend after the application returned;
one that cannot be sent fails the delivery as an application error would (`ReplyNotSent`),
and a retry by the dispatcher sends only the mail still unsent, without running the
application again.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import Message as MimeMessage
from typing import TYPE_CHECKING, Any, Final, Literal

from gateway import email as mail
from gateway.email_parse import parse_headers, parsed_headers
from gateway.email_run import DEFAULT_APP_TIMEOUT, AppResult, run_email_app, send_mails
from gateway.email_store import InboundMailStore, StoredStatus, load_mail_store
from gateway.pipeline import KeyedDispatcher
from gateway.replies import ReplyFailure, ReplyNotSent
from gateway.routes import find_branch
from gateway.types import ASGIApp, EmailScope, EmailSendEvent

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "BUSY",
    "Delivery",
    "EmailIntake",
    "Source",
    "raw_digest",
    "read_headers",
    "scope_from_raw",
    "smtp_reply",
]

logger = logging.getLogger("gateway.email")

Source = str
"""Where the mail came from: "smtp", "imap", or a provider's name (webhook intakes)."""
Status = Literal["handled", "duplicate", "rejected", "failed", "busy"]


# --- scopes from raw bytes -------------------------------------------------------------------


def read_headers(raw: bytes) -> MimeMessage:
    """Parse only the header block of `raw` (cheap; the body is left alone)."""
    return parse_headers(raw)


def raw_digest(raw: bytes) -> str:
    """The SHA-256 of the raw bytes, hex: half of the dedup key."""
    return hashlib.sha256(raw).hexdigest()


def scope_from_raw(
    raw: bytes,
    *,
    source: Source,
    adapter: str,
    sender: str,
    recipient: str,
    attempt: int = 1,
    headers: MimeMessage | None = None,
    **envelope: Any,
) -> EmailScope:
    """The ``email`` scope for `raw` sent to `recipient`; `envelope` takes the optional keys.

    `envelope` may hold ``recipients``, ``peer``, ``helo``, ``auth_user``, ``mailbox``,
    ``uid``, ``uidvalidity`` and ``state`` (see `gateway.email.build_email_scope`).
    """
    parsed = headers if headers is not None else read_headers(raw)
    return mail.build_email_scope(
        source=source,
        adapter=adapter,
        sender=sender,
        recipient=recipient,
        message_id=mail.message_id(parsed),
        attempt=attempt,
        **envelope,
    )


# --- the intake --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """How one message for one recipient ended, with the SMTP answer that says so."""

    status: Status
    code: int
    reason: str
    attempts: int = 1
    error: BaseException | None = None

    @property
    def final(self) -> bool:
        """True when the message is done with (handled, duplicate or rejected): IMAP flags it."""
        return self.status in ("handled", "duplicate", "rejected")


BUSY: Final = Delivery("busy", 451, "4.3.2 Too busy, try again later", 0)


def _failed(attempts: int, error: BaseException | None) -> Delivery:
    return Delivery("failed", 451, "4.3.0 Temporary failure, try again later", attempts, error)


class EmailIntake:
    """Store, dedup and run one message for one recipient at a time, through a dispatcher."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        adapter: str,
        source: Source,
        dispatcher: KeyedDispatcher,
        store: InboundMailStore | None = None,
        app_timeout: float = DEFAULT_APP_TIMEOUT,
        state: Mapping[str, Any] | None = None,
    ) -> None:
        self.app = app
        self.adapter = adapter
        self.source: Source = source
        self.dispatcher = dispatcher
        self.store = store if store is not None else load_mail_store(None)
        self.app_timeout = app_timeout
        self.state = state
        self._accepts = _recipient_check(app)
        if self._accepts is None:
            logger.warning(
                "%s: no EmailToRouter found in the application; every recipient is refused.",
                adapter,
            )

    async def aclose(self, timeout: float) -> None:
        """Stop accepting, let in-flight deliveries finish within `timeout`, write the log."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        await self.dispatcher.aclose(timeout)
        await self.store.aclose(max(1.0, deadline - loop.time()))

    @property
    def busy(self) -> bool:
        """True when the dispatcher has no free slot: a new message would have to wait."""
        return self.dispatcher.in_flight >= self.dispatcher.max_in_flight

    def accepts(self, recipient: str) -> bool:
        """Whether the application's `EmailToRouter` takes mail for `recipient`."""
        return self._accepts is not None and self._accepts(recipient)

    async def deliver(
        self,
        raw: bytes,
        *,
        sender: str,
        recipient: str,
        key: str | None = None,
        wait: bool = True,
        **envelope: Any,
    ) -> Delivery:
        """Handle `raw` for `recipient` once; never raises for an application failure.

        `key` orders deliveries (IMAP passes the mailbox); by default it is the message's
        digest and recipient, so only copies of the same delivery run one after another.
        With ``wait=False`` a full dispatcher answers "busy" (451) at once instead of waiting.
        """
        headers = read_headers(raw)
        digest = raw_digest(raw)
        if self.state is not None:
            envelope.setdefault("state", self.state)
        scope = scope_from_raw(
            raw,
            source=self.source,
            adapter=self.adapter,
            sender=sender,
            recipient=recipient,
            headers=headers,
            **envelope,
        )
        runner = _Run(self, raw, digest, scope, headers)
        outcome = await self._dispatch(key or f"{recipient}:{digest}", runner, scope, raw, wait)
        if outcome is None:
            return BUSY
        if not outcome.handled:
            return _failed(outcome.attempts, outcome.error)
        return runner.delivery(outcome.attempts)

    async def deliver_all(
        self, raw: bytes, *, sender: str, recipients: Sequence[str], **envelope: Any
    ) -> list[Delivery]:
        """`deliver` to every recipient concurrently; one Delivery per recipient, in order.

        Spellings of one address (`gateway.email.canonical_address`) run the application once,
        for the first spelling, and share its Delivery.
        """
        unique: dict[str, str] = {}
        for recipient in recipients:
            unique.setdefault(mail.canonical_address(recipient), recipient)
        envelope.setdefault("recipients", list(unique.values()))
        if len(unique) == 1:  # the usual case: no task to gather
            [only] = unique.values()
            done = [await self.deliver(raw, sender=sender, recipient=only, **envelope)]
        else:
            done = await asyncio.gather(
                *(
                    self.deliver(raw, sender=sender, recipient=r, **envelope)
                    for r in unique.values()
                )
            )
        by_address = dict(zip(unique, done, strict=True))
        return [by_address[mail.canonical_address(recipient)] for recipient in recipients]

    async def _dispatch(
        self, key: str, runner: _Run, scope: EmailScope, raw: bytes, wait: bool
    ) -> Any:
        if wait:
            return await self.dispatcher.run(key, runner, scope=dict(scope), payload=raw)
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def finished(outcome: Any) -> None:
            if not done.done():  # the waiter may be gone (an SMTP client hung up)
                done.set_result(outcome)

        accepted = self.dispatcher.try_submit(
            key, runner, scope=dict(scope), payload=raw, on_done=finished
        )
        return await done if accepted else None


def _recipient_check(app: ASGIApp) -> Callable[[str], bool] | None:
    """The ``accepts`` of the router on the application's email branch, if it has one."""
    accepts = getattr(find_branch(app, "email"), "accepts", None)
    return accepts if callable(accepts) else None


class _Run:
    """One delivery's handler for the dispatcher; it may be called again on retry."""

    def __init__(
        self, intake: EmailIntake, raw: bytes, digest: str, scope: EmailScope, headers: MimeMessage
    ) -> None:
        self.intake = intake
        self.raw = raw
        self.digest = digest
        self.scope = scope
        self.headers = headers
        self.subject = mail.subject(headers)
        self.received_at = datetime.now(UTC)
        self.duplicate = False
        self.result: AppResult | None = None
        self.attempt = 0
        # Mail the application asked for that a previous attempt could not send.
        self.unsent: list[EmailSendEvent] = []

    async def __call__(self) -> None:
        if self.unsent:
            # The application returned before; only its mail failed: send just that again,
            # so a retry never repeats the consumer's side effects or the mail already sent.
            self.attempt += 1
            await self._send(self.unsent)
            return
        store = self.intake.store
        known = await store.lookup(self.scope, self.digest)
        if known is not None and known.status == "handled":
            self.duplicate = True
            logger.info("%s: already handled for %s.", self._name(), self.scope["recipient"])
            return
        self.attempt = attempt = (known.attempts if known is not None else 0) + 1
        scope: EmailScope = {**self.scope, "attempt": attempt}
        try:
            # The consumer's parse_message reuses the header block parsed for the scope.
            with parsed_headers(self.raw, self.headers):
                result = await run_email_app(
                    self.intake.app, scope, self.raw, self.intake.app_timeout
                )
        except Exception as exc:
            self._record("failed", attempt, repr(exc)[:10000])
            raise
        self.result = result
        if result.rejection is not None:
            self.intake.dispatcher.metrics.inc(self.intake.dispatcher.protocol, "rejected")
        await self._send(result.outbox, result.policies)

    async def _send(
        self, mails: Sequence[EmailSendEvent], policies: Sequence[ReplyFailure] = ()
    ) -> None:
        """Send the application's mail; record the delivery as done, or failed with the rest."""
        try:
            await send_mails(mails, policies)
        except ReplyNotSent as exc:
            self.unsent = [mail.validate_send_event(event) for event in exc.unsent]
            # The stored error names the unsent mail: an admin sees what the sender missed.
            self._record("failed", self.attempt, "\n".join([repr(exc), *exc.__notes__])[:10000])
            raise
        self.unsent = []
        rejected = self.result is not None and self.result.rejection is not None
        self._record("rejected" if rejected else "handled", self.attempt)

    def _record(self, status: StoredStatus, attempt: int, error: str = "") -> None:
        self.intake.store.record(
            self.scope, self.digest, self.raw, self.subject, status, attempt, error,
            received_at=self.received_at,
        )  # fmt: skip

    def _name(self) -> str:
        return f"message {self.scope['message_id'] or self.digest[:12]!r}"

    def delivery(self, attempts: int) -> Delivery:
        if self.duplicate:
            return Delivery("duplicate", 250, "2.0.0 OK (already handled)", attempts)
        rejection = self.result.rejection if self.result is not None else None
        if rejection is not None:
            code = rejection.get("code", mail.DEFAULT_REJECT_CODE)
            reason = rejection.get("reason", mail.DEFAULT_REJECT_REASON)
            return Delivery("rejected", code, reason, attempts)
        return Delivery("handled", 250, "2.0.0 OK", attempts)


def smtp_reply(deliveries: Sequence[Delivery]) -> str:
    """One SMTP reply for a transaction: a temporary failure wins, then a rejection, then 250."""
    for delivery in deliveries:
        if delivery.status in ("failed", "busy"):
            return f"{delivery.code} {delivery.reason}"
    rejected = [d for d in deliveries if d.status == "rejected"]
    # A temporary rejection keeps the message in the sender's queue; prefer it.
    if rejected:
        first = min(rejected, key=lambda d: d.code // 100 != 4)
        return f"{first.code} {first.reason}"
    return "250 2.0.0 OK"
