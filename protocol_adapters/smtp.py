"""The SMTP adapter: the gateway as a mail exchanger, on aiosmtpd, in the gateway's own loop.

Recipients are checked against the application's `EmailToRouter` at ``RCPT`` (``550 5.1.1``
for the rest: never an open relay). After ``DATA`` the application runs once per accepted
recipient and the client gets ``250`` only when every run returned; a failure, a timeout or
overload answers ``451`` so the sending server retries, and the dedup store keeps a retried
message from being handled twice. Past ``MAX_CONNECTIONS`` open connections a new one gets
``421`` instead of the greeting and is closed: a flood of sessions holds neither memory (every
session may buffer up to ``DATA_SIZE_LIMIT``) nor the loop's time beyond that. This is the
only module that imports aiosmtpd.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import socket
import ssl
from collections.abc import Mapping
from typing import Any, Final

from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

from gateway.adapters import AdapterHealth, DeployRisk, Listener, ProtocolAdapter
from gateway.busy import BusyHold
from gateway.email import canonical_address
from gateway.email_store import load_mail_store
from gateway.pipeline import DeadLetter, KeyedDispatcher, RetryPolicy
from protocol_adapters._compat_aiosmtpd import SMTP, check_version
from protocol_adapters.email_common import BUSY, EmailIntake, smtp_reply
from protocol_adapters.smtp_options import SMTP_OPTIONS, check_smtp_options, smtp_deploy_risks

__all__ = ["SMTPAdapter"]

logger = logging.getLogger("gateway.smtp")

ANSWER_UNKNOWN_RECIPIENT: Final = "550 5.1.1 Recipient address rejected: no such mailbox here"
ANSWER_TOO_MANY_RECIPIENTS: Final = "452 4.5.3 Too many recipients"
ANSWER_SHUTTING_DOWN: Final = "421 4.3.2 Service shutting down, try again later"
ANSWER_TOO_MANY_CONNECTIONS: Final = "421 4.3.2 Too many connections, try again later"
ANSWER_TEMPORARY: Final = "451 4.3.0 Temporary failure, try again later"
ANSWER_RECIPIENT_OK: Final = "250 2.1.5 OK"


class SMTPAdapter(ProtocolAdapter):
    """Receives mail over SMTP (and ESMTP: SIZE, 8BITMIME, SMTPUTF8, STARTTLS, AUTH)."""

    protocol = "email"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.options: dict[str, Any] = SMTP_OPTIONS.parse(self.context.options)
        self._server: asyncio.AbstractServer | None = None
        self._dispatcher: KeyedDispatcher | None = None
        self._intake: EmailIntake | None = None
        # Open connections: added when made, removed when lost, whichever way they end.
        self.connections: set[SMTP] = set()
        self.tls_context: ssl.SSLContext | None = None
        self.stopping = False
        self.busy_hold = BusyHold(self.options["BUSY_DELAY"], self.options["MAX_CONNECTIONS"])
        """Holds busy answers ``BUSY_DELAY`` seconds (Postfix's ``smtpd_error_sleep_time``)."""

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> list[str]:
        """Every problem with OPTIONS (SMTP_OPTIONS), one sentence each."""
        return check_smtp_options(options)

    @classmethod
    def deploy_risks(cls, options: Mapping[str, Any]) -> list[DeployRisk]:
        """A public port taking over 25 MiB, or passwords without TLS (gateway.W103, W106)."""
        return smtp_deploy_risks(options)

    @property
    def intake(self) -> EmailIntake:
        """The shared intake; exists once `start()` ran."""
        assert self._intake is not None, "SMTPAdapter.start() has not run"
        return self._intake

    async def start(self) -> list[Listener]:
        options = self.options
        check_version()
        _quiet_library_log()
        self._dispatcher = KeyedDispatcher(
            self.protocol,
            max_in_flight=options["MAX_IN_FLIGHT"],
            # The sending server retries after a 451: retrying here too would only delay it.
            retry=RetryPolicy(attempts=1),
            dead_letter=_sender_will_retry,
            metrics=self.context.metrics,
        )
        self._intake = EmailIntake(
            self.context.app,
            adapter=self.context.name,
            source="smtp",
            dispatcher=self._dispatcher,
            store=load_mail_store(options["STORE"]),
            app_timeout=float(options["APP_TIMEOUT"]),
            state=self.context.state,
        )
        if options["TLS"] is not None:
            self.tls_context = _tls_context(options["TLS"])
        hostname = options["HOSTNAME"] or socket.gethostname()
        loop = asyncio.get_running_loop()
        factory = _Handler(self, hostname).protocol
        self._server = await loop.create_server(factory, options["HOST"], options["PORT"])
        host, port = self._server.sockets[0].getsockname()[:2]
        logger.info("SMTP server %s listening on %s:%s", hostname, host, port)
        return [Listener("smtp", f"{host}:{port}")]

    async def stop(self, timeout: float) -> None:
        self.stopping = True
        if self._server is not None:
            self._server.close()
        if self._intake is not None:
            await self._intake.aclose(timeout)
        for connection in list(self.connections):
            if connection.transport is not None:
                connection.transport.close()

    def health(self) -> AdapterHealth:
        if self._dispatcher is None:
            return AdapterHealth("starting")
        in_flight = self._dispatcher.in_flight
        connections = len(self.connections)
        return AdapterHealth("ok", f"{connections} connection(s), {in_flight} in flight")


async def _sender_will_retry(letter: DeadLetter) -> None:
    # Not a dead letter: the client got 451 and keeps the message; InboundEmail has the error.
    logger.warning(
        "Message for %s failed; the sender was told to retry (451).", letter.key.split(":")[0]
    )


def _tls_context(tls: Mapping[str, str]) -> ssl.SSLContext:
    """The server context STARTTLS offers, from OPTIONS["TLS"]."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls["CERT_FILE"], tls["KEY_FILE"])
    return context


class _Handler:
    """aiosmtpd's handler: one per adapter, its ``handle_*`` hooks answer each command."""

    def __init__(self, adapter: SMTPAdapter, hostname: str) -> None:
        self.adapter = adapter
        self.hostname = hostname
        users = adapter.options["AUTH_USERS"] or {}
        self.users: dict[bytes, bytes] = {k.encode(): v.encode() for k, v in users.items()}

    def protocol(self) -> asyncio.BaseProtocol:
        """A new aiosmtpd SMTP protocol for one connection; past ``MAX_CONNECTIONS`` a 421."""
        options = self.adapter.options
        if len(self.adapter.connections) >= options["MAX_CONNECTIONS"]:
            return _TooMany(self.adapter)
        return _Connection(
            self,
            self.adapter.connections,
            hostname=self.hostname,
            ident=options["BANNER"],
            data_size_limit=options["DATA_SIZE_LIMIT"],
            enable_SMTPUTF8=True,
            tls_context=self.adapter.tls_context,
            require_starttls=options["REQUIRE_STARTTLS"],
            timeout=float(options["TIMEOUT"]),
            auth_required=options["AUTH_REQUIRED"],
            auth_require_tls=options["AUTH_REQUIRE_TLS"],
            authenticator=self.authenticate if self.users else None,
            auth_exclude_mechanism=None if self.users else ["LOGIN", "PLAIN"],
            loop=asyncio.get_running_loop(),
        )

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        """AUTH LOGIN / PLAIN against OPTIONS["AUTH_USERS"], in constant time."""
        if not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False)
        expected = self.users.get(data.login, b"")
        valid = hmac.compare_digest(expected, data.password) and data.login in self.users
        if not valid:
            logger.warning("AUTH %s failed for %r from %s", mechanism, data.login, session.peer)
            return AuthResult(success=False, handled=False)
        return AuthResult(success=True, auth_data=data.login.decode("utf-8", "replace"))

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.adapter.stopping:
            return ANSWER_SHUTTING_DOWN
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        canonical = canonical_address(address)
        if any(canonical_address(known) == canonical for known in envelope.rcpt_tos):
            return ANSWER_RECIPIENT_OK  # another spelling of one already accepted: kept once
        if len(envelope.rcpt_tos) >= self.adapter.options["MAX_RECIPIENTS"]:
            return ANSWER_TOO_MANY_RECIPIENTS
        if not self.adapter.intake.accepts(address):
            logger.info("Refused recipient %r from %s", address, session.peer)
            self.adapter.context.metrics.inc(self.adapter.protocol, "rejected")
            return ANSWER_UNKNOWN_RECIPIENT
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return ANSWER_RECIPIENT_OK

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        sender = "" if envelope.mail_from in (None, "<>") else str(envelope.mail_from)
        intake = self.adapter.intake
        if intake.busy:
            # Overloaded: the sender keeps the message and retries, rather than us queueing it.
            logger.warning("Overloaded: answering 451 to %s.", session.peer)
            await self.adapter.busy_hold.hold()
            return smtp_reply([BUSY])
        # Past that check a transaction waits for slots for all its recipients (backpressure).
        deliveries = await intake.deliver_all(
            raw,
            sender=sender,
            recipients=list(envelope.rcpt_tos),
            peer=_peer(session),
            helo=session.host_name,
            auth_user=session.auth_data if isinstance(session.auth_data, str) else None,
        )
        reply = smtp_reply(deliveries)
        logger.info(
            "DATA from %s <%s> to %d recipient(s), %d bytes: %s",
            session.peer,
            sender,
            len(deliveries),
            len(raw),
            reply,
        )
        return reply

    async def handle_exception(self, error: Exception) -> str:
        # aiosmtpd would answer a permanent 500 with the exception's text: the sender would
        # bounce the mail and learn our internals. A temporary failure keeps it queued.
        logger.error("SMTP session error", exc_info=error)
        return ANSWER_TEMPORARY


class _Connection(SMTP):
    """One client's session, in the adapter's set of open connections while it is open."""

    def __init__(self, handler: _Handler, connections: set[SMTP], **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.connections = connections

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Also called again after STARTTLS, with the TLS transport: a set counts it once.
        self.connections.add(self)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        # Every end comes here: QUIT, the client hanging up, the idle timeout, a reset, stop().
        self.connections.discard(self)
        super().connection_lost(error)


class _TooMany(asyncio.Protocol):
    """A connection past ``MAX_CONNECTIONS``: 421 and closed, before any SMTP session.

    RFC 5321 (3.8) lets a server answer 421 instead of its greeting; the client retries later.
    """

    def __init__(self, adapter: SMTPAdapter) -> None:
        self.adapter = adapter

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        metrics = self.adapter.context.metrics
        metrics.inc(self.adapter.protocol, "rejected")
        metrics.inc(self.adapter.protocol, "overloaded")
        logger.warning(
            "Answering 421 to %s: %d connections open (MAX_CONNECTIONS).",
            transport.get_extra_info("peername"),
            len(self.adapter.connections),
        )
        self.adapter.busy_hold.later(lambda: _answer_too_many(transport))


def _answer_too_many(transport: asyncio.WriteTransport) -> None:
    if not transport.is_closing():  # the client may have given up meanwhile
        transport.write(f"{ANSWER_TOO_MANY_CONNECTIONS}\r\n".encode())
        transport.close()


def _peer(session: Session) -> tuple[str, int] | None:
    peer: Any = session.peer
    if isinstance(peer, tuple) and len(peer) >= 2:
        return (str(peer[0]), int(peer[1]))
    return None


def _quiet_library_log() -> None:
    """aiosmtpd's "mail.log" from WARNING up, unless the project's LOGGING set its level."""
    # It logs every connection and command at INFO; gateway.smtp's own lines say what matters.
    library_log = logging.getLogger("mail.log")
    if library_log.level == logging.NOTSET:
        library_log.setLevel(logging.WARNING)
