"""Twilio SMS: webhooks in as ``sms`` scopes, TwiML replies, outbound messages over REST.

This module and `twilio_rest` (outbound) are the only ones that import ``twilio``. The webhook
and status-callback paths are served by the gateway's own HTTP server (`http_routes`), before
Django's URLconf. See docs/specs/sms.md.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from twilio.request_validator import RequestValidator, get_signature_algorithm

from gateway.adapters import AdapterHealth, DeployRisk, Listener, ProtocolAdapter
from gateway.exceptions import SmsOptedOut, SmsSendError
from gateway.pipeline import DispatcherClosed, KeyedDispatcher
from gateway.sms import (
    SmsRecord,
    SmsStore,
    keyword_action,
    load_store,
    run_sms_app,
)
from gateway.types import ASGIApp, Message, Receive, Scope, Send
from protocol_adapters.twilio_form import MissingFields, inbound_scope, twiml
from protocol_adapters.twilio_options import TWILIO_OPTIONS
from protocol_adapters.twilio_rest import TwilioSender

__all__ = ["TwilioSender", "TwilioSmsAdapter", "twiml"]

logger = logging.getLogger("gateway.sms")

MAX_REQUEST_BYTES = 64 * 1024
TWIML_TYPE = b"text/xml; charset=utf-8"


@dataclass
class _Exchange:
    """One inbound message in flight: its scope, body, and the replies collected so far."""

    scope: dict[str, Any]
    body: str
    replies: list[str] = field(default_factory=list)
    answered: bool = False


class TwilioSmsAdapter(ProtocolAdapter):
    """Serves Twilio's messaging webhook and status callbacks on the gateway's HTTP server."""

    protocol = "sms"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        options = self.context.options
        self.values = values = TWILIO_OPTIONS.parse(options)
        self.webhook_path: str = values["WEBHOOK_PATH"]
        self.status_path: str = values["STATUS_PATH"]
        self.deadline = float(values["DEADLINE"])
        self.public_url: str | None = values["PUBLIC_URL"]
        self.trust_forwarded = bool(values["TRUST_FORWARDED_HEADERS"])
        token = values["AUTH_TOKEN"]
        self.validator = RequestValidator(token) if token else None
        self.store: SmsStore = load_store(values["STORE"])
        self.sender = TwilioSender(options, self.store)
        self.dispatcher: KeyedDispatcher | None = None
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._background: set[asyncio.Task[None]] = set()
        self._stopped = asyncio.Event()

    @classmethod
    def sms_sender(cls, options: Mapping[str, Any], store: SmsStore) -> TwilioSender:
        """The outbound sender `gateway.sms.asend_sms` uses for this adapter's OPTIONS."""
        return TwilioSender(options, store)

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> list[str]:
        """Every problem with OPTIONS (TWILIO_OPTIONS), one sentence each."""
        return TWILIO_OPTIONS.check(options)

    @classmethod
    def deploy_risks(cls, options: Mapping[str, Any]) -> list[DeployRisk]:
        """No AUTH_TOKEN: the webhook refuses every request (gateway.W104)."""
        if options.get("AUTH_TOKEN"):
            return []
        return [
            DeployRisk(
                "gateway.W104",
                'OPTIONS["AUTH_TOKEN"] is not set: the SMS webhook refuses every request (403).',
                'Set it from the environment, e.g. os.environ.get("TWILIO_AUTH_TOKEN").',
            )
        ]

    async def start(self) -> list[Listener]:
        self.dispatcher = KeyedDispatcher(
            self.protocol,
            max_in_flight=int(self.values["MAX_IN_FLIGHT"]),
            retry=self.values["RETRY"],
            dead_letter=self.context.dead_letter,
            metrics=self.context.metrics,
        )
        if self.validator is None:
            logger.warning(
                'OPTIONS["AUTH_TOKEN"] is not set: %s refuses every webhook (403) until it is.',
                self.webhook_path,
            )
        return [Listener("sms", f"POST {self.webhook_path}")]

    def http_routes(self) -> Mapping[str, ASGIApp]:
        return {self.webhook_path: self.webhook, self.status_path: self.status_callback}

    async def stop(self, timeout: float) -> None:
        self._stopped.set()
        if self.dispatcher is not None:
            await self.dispatcher.aclose(timeout)
        if self._background:
            await asyncio.wait(list(self._background), timeout=timeout)
        await self.sender.close()

    def health(self) -> AdapterHealth:
        in_flight = self.dispatcher.in_flight if self.dispatcher else 0
        return AdapterHealth("ok", f"{in_flight} message(s) in flight")

    # The webhook.

    async def webhook(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Twilio's incoming-message webhook: answer TwiML."""
        form = await self._verified_form(scope, receive, send)
        if form is None:
            return
        try:
            sms_scope = inbound_scope(form, self.context.name, self.context.state)
        except MissingFields as exc:
            await self._refuse(send, 400, f"Bad Request: {exc}")
            return
        replies = await self._handle(dict(sms_scope), form.get("Body", ""))
        await _respond(send, 200, twiml(replies), TWIML_TYPE)

    async def status_callback(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Twilio's status callback: move the stored message's status forward."""
        form = await self._verified_form(scope, receive, send)
        if form is None:
            return
        sid, status = form.get("MessageSid"), form.get("MessageStatus")
        if not sid or not status:
            await self._refuse(send, 400, "Bad Request: missing MessageSid or MessageStatus")
            return
        error = form.get("ErrorCode", "")
        try:
            await self.store.update_status(sid, status, f"Twilio error {error}" if error else "")
        except Exception:
            logger.exception("Could not update the status of SMS %s.", sid)
        await _respond(send, 204, b"", None)

    async def _verified_form(
        self, scope: Scope, receive: Receive, send: Send
    ) -> dict[str, str] | None:
        """The form of a signed POST, or None after answering 405 / 413 / 403."""
        if scope["method"] != "POST":
            await self._refuse(send, 405, "Method Not Allowed", allow=b"POST")
            return None
        body = await _read_body(receive)
        if body is None:
            await self._refuse(send, 413, "Request Entity Too Large")
            return None
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        if self.validator is None:
            logger.warning('Refused a webhook: OPTIONS["AUTH_TOKEN"] is not set.')
            await self._refuse(send, 403, "Forbidden: no AUTH_TOKEN to check signatures with")
            return None
        if not self._signed(scope, form):
            await self._refuse(send, 403, "Forbidden: invalid X-Twilio-Signature")
            return None
        return form

    def _signed(self, scope: Scope, form: dict[str, str]) -> bool:
        headers = _headers(scope)
        signature = headers.get("x-twilio-signature")
        if not signature:
            return False
        algorithm = get_signature_algorithm(headers.get("x-twilio-webhooks-signature-settings"))
        assert self.validator is not None
        valid: bool = self.validator.validate(self.signed_url(scope), form, signature, algorithm)
        return valid

    def signed_url(self, scope: Scope) -> str:
        """The URL Twilio signed: the public base joined with the request's path and query."""
        headers = _headers(scope)
        host = headers.get("host") or "{}:{}".format(*scope.get("server") or ("localhost", 80))
        base = self.public_url or f"{scope.get('scheme', 'http')}://{host}"
        if self.trust_forwarded:
            parts = urlsplit(base)
            proto = headers.get("x-forwarded-proto", "").split(",")[0].strip()
            forwarded_host = headers.get("x-forwarded-host", "").split(",")[0].strip()
            base = urlunsplit(
                (proto or parts.scheme, forwarded_host or parts.netloc, parts.path, "", "")
            )
        raw_path = scope.get("raw_path") or scope["path"].encode()
        query = scope.get("query_string", b"")
        url = base.rstrip("/") + raw_path.decode("latin-1")
        return f"{url}?{query.decode('latin-1')}" if query else url

    async def _refuse(self, send: Send, status: int, text: str, allow: bytes | None = None) -> None:
        self.context.metrics.inc(self.protocol, "rejected")
        logger.warning("SMS webhook answered %d: %s", status, text)
        headers = [(b"allow", allow)] if allow else []
        await _respond(send, status, f"{text}\n".encode(), b"text/plain; charset=utf-8", headers)

    # One inbound message.

    async def _handle(self, scope: dict[str, Any], body: str) -> list[str]:
        """Dedup, keywords, then the application, answered within the deadline."""
        if not await self._first_time(scope, body):
            logger.info("SMS %s was already received; not handled again.", scope["message_id"])
            self.context.metrics.inc(self.protocol, "rejected")
            return []
        action = keyword_action(body)
        if action is not None:
            return await self._keyword(action, scope)
        exchange = _Exchange(scope, body)
        task = asyncio.create_task(self._run(exchange))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        await asyncio.wait({task}, timeout=self.deadline)
        if not task.done():
            logger.warning(
                "SMS %s: past the %.1fs deadline, answering now.",
                scope["message_id"],
                self.deadline,
            )
        exchange.answered = True
        return exchange.replies

    async def _first_time(self, scope: dict[str, Any], body: str) -> bool:
        sid: str = scope["message_id"]
        if sid in self._seen:
            return False
        self._seen[sid] = None
        if len(self._seen) > 10_000:
            self._seen.popitem(last=False)
        record = SmsRecord(
            "inbound",
            sid,
            _address(scope, "from"),
            _address(scope, "to"),
            body,
            "received",
            scope["media"],
        )
        try:
            return await self.store.record(record)
        except Exception:
            # The store is down: handle the message anyway; in-process dedup still holds.
            logger.exception("Could not store inbound SMS %s.", sid)
            return True

    async def _keyword(self, action: str, scope: dict[str, Any]) -> list[str]:
        sender = _address(scope, "from")
        if action == "help":
            text = self.values["HELP_TEXT"]
            return [str(text)] if text else []
        await self.store.set_opted_out(sender, action == "opt_out")
        logger.info("%s opted %s.", sender, "out" if action == "opt_out" else "back in")
        return []

    async def _run(self, exchange: _Exchange) -> None:
        assert self.dispatcher is not None
        scope = exchange.scope
        try:
            outcome = await self.dispatcher.run(
                scope["from"],
                lambda: self._call_app(exchange),
                scope=scope,
                payload=exchange.body.encode(),
            )
        except DispatcherClosed as exc:
            await self._mark_failed(scope["message_id"], repr(exc))
            return
        if not outcome.handled:
            if not exchange.answered:
                exchange.replies.clear()  # a failed message is answered with empty TwiML
            await self._mark_failed(scope["message_id"], repr(outcome.error))

    async def _mark_failed(self, sid: str, error: str) -> None:
        try:
            await self.store.mark_failed(sid, error)
        except Exception:
            logger.exception("Could not mark SMS %s as failed.", sid)

    async def _call_app(self, exchange: _Exchange) -> None:
        exchange.replies.clear()  # a retried attempt starts over

        async def sent(message: Message) -> None:
            await self._app_sent(exchange, message)

        await run_sms_app(
            self.context.app, exchange.scope, exchange.body, sent, stopped=self._stopped
        )

    async def _app_sent(self, exchange: _Exchange, message: Message) -> None:
        kind = message.get("type")
        if kind == "sms.reply":
            await self._reply(exchange, str(message["body"]))
        else:
            await self.sender.send(
                message["to"],
                message["body"],
                media_urls=message.get("media_urls", ()),
                from_=message.get("from"),
            )

    async def _reply(self, exchange: _Exchange, body: str) -> None:
        """TwiML while the webhook is open, REST after; never to a number that opted out.

        A reply that cannot be sent raises here, in the consumer's ``reply()``: the message
        fails as a consumer error would (gateway.replies), unless the consumer opted out.
        """
        scope = exchange.scope
        to = _address(scope, "from")
        if await self.store.is_opted_out(to):
            _log_opted_out(scope, to)
            return
        if not exchange.answered:
            exchange.replies.append(body)
            return
        if not self.sender.configured:
            raise SmsSendError(
                f"SMS {scope['message_id']}: a reply after the deadline goes over Twilio's REST "
                "API, and ACCOUNT_SID and AUTH_TOKEN are not configured."
            )
        try:
            await self.sender.send(to, body, from_=_address(scope, "to"))
        except SmsOptedOut:
            _log_opted_out(scope, to)  # opted out while the consumer ran


def _log_opted_out(scope: Mapping[str, Any], to: str) -> None:
    logger.info(
        "SMS %s: reply to %s not sent: the number opted out (STOP).", scope["message_id"], to
    )


def _address(scope: Mapping[str, Any], key: str) -> str:
    number = str(scope[key])
    return f"whatsapp:{number}" if scope.get("whatsapp") else number


def _headers(scope: Scope) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in scope.get("headers", []):
        headers.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
    return headers


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None past MAX_REQUEST_BYTES."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks)
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > MAX_REQUEST_BYTES:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes | None,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    pairs = [*(headers or []), (b"content-length", str(len(body)).encode())]
    if content_type is not None:
        pairs.append((b"content-type", content_type))
    await send({"type": "http.response.start", "status": status, "headers": pairs})
    await send({"type": "http.response.body", "body": body})
