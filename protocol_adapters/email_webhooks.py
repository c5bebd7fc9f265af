"""Inbound mail from mail providers' webhooks, checked and parsed by django-anymail.

One adapter entry per provider (``OPTIONS["PROVIDER"]``: amazon_ses, brevo, mailersend,
mailgun, mailjet, mailtrap, mandrill, postal, postmark, resend, sendgrid, sparkpost) serves
that provider's inbound webhook on the gateway's own HTTP server (`http_routes`). Each request
goes through anymail's inbound view for the provider, called directly: its
``run_validators`` (signature or basic auth) and ``parse_events`` (the provider's format into
an ``AnymailInboundMessage``, attachments as MIME parts), never its ``post`` and never the
``anymail.signals.inbound`` signal, so the provider's answer waits for the application. Each
message then goes through the same `EmailIntake` as SMTP and IMAP: an ``email`` scope whose
``source`` is the provider, the application's `EmailToRouter`, the `InboundMailStore`.

Answers: ``200`` once the application returned for every recipient (or the message was
already handled: same provider event id, or same bytes and Message-ID); ``401`` / ``403``
for a missing or wrong signature or password; ``400`` for a body that is not the provider's;
``405`` for another method; ``413`` past ``MAX_BODY_BYTES``; ``503`` with ``Retry-After``
when busy: past the ``INTAKE`` cap on requests being read, checked and parsed at once
(`gateway.intakes`), or, for a provider that retries, with ``MAX_IN_FLIGHT`` messages already
at the application, checked before the request is read (a provider that does not retry waits
for a slot instead). On an
application error the status that makes the provider retry (`Provider.retry_status`), or, for
a provider that does not retry (or ``ON_APP_ERROR: "dead_letter"``), a dead letter for replay
and ``200``. This is the only module that imports anymail.
"""

from __future__ import annotations

import asyncio
import importlib
import io
import logging
import warnings
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from anymail.exceptions import AnymailWebhookValidationFailure
from anymail.signals import AnymailInboundEvent
from django.core.exceptions import ImproperlyConfigured, RequestDataTooBig, TooManyFieldsSent
from django.core.handlers.asgi import ASGIRequest

from gateway.adapters import AdapterHealth, Listener, ProtocolAdapter
from gateway.email_store import load_mail_store
from gateway.intakes import BUSY_BODY, IntakeBusy, IntakeGate, refused_busy
from gateway.pipeline import DeadLetter, KeyedDispatcher, RetryPolicy
from gateway.turns import loop_turn
from gateway.types import Receive, Scope, Send
from protocol_adapters.email_common import Delivery, EmailIntake, scope_from_raw
from protocol_adapters.email_webhooks_mime import message_bytes, recipients, sender
from protocol_adapters.email_webhooks_options import (
    EMAIL_WEBHOOK_OPTIONS,
    PROVIDERS,
    Provider,
    check_webhook_options,
)
from protocol_adapters.email_webhooks_sns import (
    SnsCertificateUnavailable,
    SnsSignatureError,
    SnsVerifier,
)

__all__ = ["EmailWebhookAdapter"]

logger = logging.getLogger("gateway.email.webhooks")

SEEN_EVENTS: Final = 10_000
TEXT: Final = b"text/plain; charset=utf-8"


class _Refused(Exception):
    """A request answered without reaching the application: its status and why."""

    def __init__(self, status: int, reason: str, headers: Sequence[tuple[bytes, bytes]] = ()):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = list(headers)


class EmailWebhookAdapter(ProtocolAdapter):
    """Serves one mail provider's inbound webhook; messages become ``email`` scopes."""

    protocol = "email"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.values: dict[str, Any] = EMAIL_WEBHOOK_OPTIONS.parse(self.context.options)
        self.provider: Provider = PROVIDERS[self.values["PROVIDER"]]
        self.path: str = self.values["WEBHOOK_PATH"] or f"/email/{self.provider.name}/"
        choice = self.values["ON_APP_ERROR"]
        self.retries = self.provider.retry_status is not None and choice != "dead_letter"
        self.view = _anymail_view(self.provider, self.values)
        sns = self.provider.name == "amazon_ses" and self.values["SNS_SIGNATURE"]
        self.sns = SnsVerifier(self.values["SNS_CERT_URL"]) if sns else None
        self._intake: EmailIntake | None = None
        self.gate = IntakeGate(self.values["INTAKE"])
        """Bounds reading, checking and parsing requests (``INTAKE``)."""
        self._handled: OrderedDict[str, None] = OrderedDict()

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> list[str]:
        """Every problem with OPTIONS (EMAIL_WEBHOOK_OPTIONS and the provider's needs)."""
        return check_webhook_options(options)

    @property
    def intake(self) -> EmailIntake:
        """The shared intake; exists once `start()` ran."""
        assert self._intake is not None, "EmailWebhookAdapter.start() has not run"
        return self._intake

    async def start(self) -> list[Listener]:
        values = self.values
        dispatcher = KeyedDispatcher(
            self.protocol,
            max_in_flight=values["MAX_IN_FLIGHT"],
            # A provider that retries is told to (its retry is the durable copy); for the
            # others the dispatcher retries here, then the dead letter is the copy.
            retry=RetryPolicy(attempts=1) if self.retries else values["RETRY"],
            dead_letter=self._provider_will_retry if self.retries else self.context.dead_letter,
            metrics=self.context.metrics,
        )
        self._intake = EmailIntake(
            self.context.app,
            adapter=self.context.name,
            source=self.provider.name,
            dispatcher=dispatcher,
            store=load_mail_store(values["STORE"]),
            app_timeout=float(values["APP_TIMEOUT"]),
            state=self.context.state,
        )
        logger.info(
            "%s: %s inbound webhook at POST %s", self.context.name, self.provider.name, self.path
        )
        return [Listener("email", f"POST {self.path}")]

    def http_routes(self) -> Mapping[str, Any]:
        return {self.path: self.webhook}

    async def stop(self, timeout: float) -> None:
        if self._intake is not None:
            await self._intake.aclose(timeout)

    def health(self) -> AdapterHealth:
        if self._intake is None:
            return AdapterHealth("starting")
        return AdapterHealth("ok", f"{self.intake.dispatcher.in_flight} message(s) in flight")

    # The webhook.

    async def webhook(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The provider's inbound webhook: check, parse, run the application, then answer."""
        if scope["method"] == "HEAD":  # some providers check the URL with HEAD first
            await _respond(send, 200, b"")
            return
        try:
            self._refuse_if_full()
            async with self.gate.turn():  # reading, checking and parsing: INTAKE's cap
                self._refuse_if_full()  # it may have filled up meanwhile
                events = await self._events(scope, receive)
            status = await self._deliver_all(events, scope)
        except IntakeBusy as exc:
            await self._busy(send, str(exc))
            return
        except _Refused as refused:
            self.context.metrics.inc(self.protocol, "rejected")
            logger.warning(
                "%s webhook answered %d: %s", self.provider.name, refused.status, refused.reason
            )
            await _respond(send, refused.status, f"{refused.reason}\n".encode(), refused.headers)
            return
        except Exception:  # a bug of ours or a store that is down: the provider keeps the mail
            logger.exception("%s webhook failed; answering 500.", self.provider.name)
            await _respond(send, 500, b"Internal Server Error\n")
            return
        await _respond(send, status, b"OK\n" if status < 300 else b"Try again later\n")

    def _refuse_if_full(self) -> None:
        """`IntakeBusy` when a provider that retries would be refused by a full dispatcher.

        Checked before the request is read: reading, checking and parsing a mail only to
        answer 503 takes the event loop's time from every other intake for nothing.
        """
        if self.retries and self.intake.busy:
            raise IntakeBusy(f"{self.intake.dispatcher.max_in_flight} messages in flight")

    async def _busy(self, send: Send, detail: str) -> None:
        """Past the cap: 503 with Retry-After; the provider keeps the mail and retries."""
        what, metrics = f"{self.provider.name} webhook", self.context.metrics
        headers = refused_busy(logger, metrics, self.protocol, what, self.gate.limits, detail)
        await self.gate.busy_hold.hold()
        await _respond(send, 503, BUSY_BODY, headers)

    async def _events(self, scope: Scope, receive: Receive) -> list[Any]:
        """The inbound events of a checked request, or `_Refused`."""
        if scope["method"] != "POST":
            raise _Refused(405, "Method Not Allowed", [(b"allow", b"POST, HEAD")])
        body = await _read_body(receive, self.values["MAX_BODY_BYTES"])
        request = ASGIRequest(scope, io.BytesIO(body))
        self._validate(request)
        if self.sns is not None:
            await self._verify_sns(body)
        parse = self.view.parse_events
        try:
            if self.provider.fetches:  # the provider's API is called: a thread waits for it
                found = await asyncio.to_thread(parse, request)
            else:
                async with loop_turn(self.context.name):  # milliseconds of parsing
                    found = parse(request)
        except OSError as exc:  # the provider's API (message content, attachments) is away
            raise _Refused(
                503, f"Could not fetch the message from {self.provider.name}: {exc!r}"
            ) from exc
        except AnymailWebhookValidationFailure as exc:
            raise _Refused(403, f"Forbidden: {exc}") from exc
        except (RequestDataTooBig, TooManyFieldsSent) as exc:  # Django's DATA_UPLOAD_MAX_*
            raise _Refused(413, f"Request Entity Too Large: {exc}") from exc
        except ImproperlyConfigured as exc:  # anymail: another webhook's post sent here
            raise _Refused(400, f"Bad Request: {exc}") from exc
        except Exception as exc:  # anything else the provider's format parser raised
            raise _Refused(
                400,
                f"Bad Request: not a {self.provider.name} inbound webhook "
                f"({type(exc).__name__}: {exc})"[:500],
            ) from exc
        return [e for e in found if isinstance(e, AnymailInboundEvent) and e.message is not None]

    def _validate(self, request: ASGIRequest) -> None:
        if getattr(self.view, "basic_auth", None) and "HTTP_AUTHORIZATION" not in request.META:
            # Amazon SNS sends the URL's password only after a 401 that asks for it.
            challenge = (b"www-authenticate", b'Basic realm="gateway email webhook"')
            raise _Refused(401, "Unauthorized: basic auth required", [challenge])
        try:
            self.view.run_validators(request)
        except AnymailWebhookValidationFailure as exc:
            raise _Refused(403, f"Forbidden: {exc}") from exc
        except (RequestDataTooBig, TooManyFieldsSent) as exc:
            raise _Refused(413, f"Request Entity Too Large: {exc}") from exc
        except Exception as exc:  # a body the signature check could not even read
            raise _Refused(400, f"Bad Request: {type(exc).__name__}: {exc}"[:500]) from exc

    async def _verify_sns(self, body: bytes) -> None:
        assert self.sns is not None
        try:
            await self.sns.verify(body)
        except SnsSignatureError as exc:
            raise _Refused(403, f"Forbidden: {exc}") from exc
        except SnsCertificateUnavailable as exc:
            raise _Refused(503, f"Service Unavailable: {exc}") from exc

    async def _deliver_all(self, events: Sequence[Any], scope: Scope) -> int:
        """Run the application on every event of the request; the status to answer."""
        failed = False
        for event in events:
            key = f"{event.event_id}" if event.event_id else None
            if key is not None and key in self._handled:
                logger.info("%s event %s was already handled.", self.provider.name, key)
                continue
            deliveries = await self._deliver(event, scope)
            if all(d.final for d in deliveries):
                self._remember(key)
            else:
                failed = True
        if failed and self.retries:
            assert self.provider.retry_status is not None
            return self.provider.retry_status
        return 200  # handled, or failed for good and kept as a dead letter

    async def _deliver(self, event: Any, scope: Scope) -> list[Delivery]:
        message = event.message
        async with loop_turn(self.context.name):
            raw = message_bytes(message)
        envelope: dict[str, Any] = {"peer": _peer(scope)}
        from_ = sender(message, message.envelope_sender)
        to = recipients(message, _envelope_recipients(event))
        accepted = [address for address in to if self.intake.accepts(address)]
        if not accepted:
            await self._unrouted(raw, from_, to, envelope)
            return []
        # A provider that retries is not kept waiting for a full dispatcher: the delivery is
        # "busy" (nothing stored) and the request answered 503, as past the gate. One that
        # does not retry waits for a slot: a 503 could be the end of its mail.
        deliveries = await self.intake.deliver_all(
            raw, sender=from_, recipients=accepted, wait=not self.retries, **envelope
        )
        if any(delivery.status == "busy" for delivery in deliveries):
            raise IntakeBusy(f"{self.intake.dispatcher.max_in_flight} messages in flight")
        return deliveries

    async def _unrouted(
        self, raw: bytes, from_: str, to: list[str], envelope: dict[str, Any]
    ) -> None:
        """No route takes any recipient: the provider has the mail already, so keep it."""
        self.context.metrics.inc(self.protocol, "rejected")
        first = to[0] if to else ""
        logger.warning(
            "%s: no email route for %s; kept as a dead letter.",
            self.provider.name,
            ", ".join(to) or "(no recipient)",
        )
        email_scope = scope_from_raw(
            raw,
            source=self.provider.name,
            adapter=self.context.name,
            sender=from_,
            recipient=first,
            recipients=to,
            **envelope,
        )
        letter = DeadLetter(
            self.protocol,
            first,
            dict(email_scope),
            raw,
            f"RouteNotFound: no email route for {to!r}",
            0,
            datetime.now(UTC),
        )
        await self.context.dead_letter(letter)

    def _remember(self, key: str | None) -> None:
        if key is None:
            return
        self._handled[key] = None
        if len(self._handled) > SEEN_EVENTS:
            self._handled.popitem(last=False)

    async def _provider_will_retry(self, letter: DeadLetter) -> None:
        # Not a dead letter: the provider was told to retry; InboundEmail has the error.
        logger.warning(
            "%s: message for %s failed; the provider was told to retry (%s).",
            self.provider.name,
            letter.scope.get("recipient"),
            self.provider.retry_status,
        )


def _anymail_view(provider: Provider, values: Mapping[str, Any]) -> Any:
    """anymail's inbound view for `provider`, configured from OPTIONS (not ANYMAIL settings)."""
    module_name, class_name = provider.view.rsplit(".", 1)
    view_class = getattr(importlib.import_module(f"anymail.webhooks.{module_name}"), class_name)
    kwargs: dict[str, Any] = {key.lower(): value for key, value in values["ANYMAIL"].items()}
    given = {
        "webhook_secret": values["WEBHOOK_SECRET"],
        provider.signing_kwarg: values["SIGNING_KEY"],
        provider.api_kwarg: values["API_KEY"],
        "api_url": values["API_URL"],
        "webhook_url": values["WEBHOOK_URL"],
    }
    kwargs.update({k: v for k, v in given.items() if k is not None and v is not None})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        view = view_class(**kwargs)
    for warning in caught:  # e.g. anymail no longer tests its SendGrid support
        logger.warning("%s: %s", provider.name, warning.message)
    return view


def _envelope_recipients(event: Any) -> list[str]:
    """Every envelope recipient the provider reported (Amazon SES lists all of them)."""
    receipt = event.esp_event.get("receipt") if isinstance(event.esp_event, Mapping) else None
    listed = receipt.get("recipients") if isinstance(receipt, Mapping) else None
    if isinstance(listed, list) and all(isinstance(item, str) for item in listed):
        return listed
    single = event.message.envelope_recipient
    return [single] if single else []


def _peer(scope: Scope) -> tuple[str, int] | None:
    client = scope.get("client")
    return (str(client[0]), int(client[1])) if client else None


async def _read_body(receive: Receive, limit: int) -> bytes:
    """The whole request body; `_Refused` (413) past `limit` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _Refused(413, f"Request Entity Too Large: over {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body"):
            break
    return b"".join(chunks)


async def _respond(
    send: Send, status: int, body: bytes, headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    pairs = [*headers, (b"content-length", str(len(body)).encode()), (b"content-type", TEXT)]
    await send({"type": "http.response.start", "status": status, "headers": pairs})
    await send({"type": "http.response.body", "body": body})
