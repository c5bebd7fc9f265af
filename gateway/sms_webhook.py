"""An SMS provider's webhook, the steps every provider shares: check, dedup, keywords, run, answer.

A provider's adapter (``protocol_adapters/<provider>_sms.py``) subclasses `SmsWebhookAdapter`
and speaks only its wire: `verify` a request with the provider's SDK, `parse` it into an
`InboundSms` or a `StatusUpdate`, `answer` in the provider's format, and make its REST sender
(`sms_sender`). The rest is here, once: method and size checks, dedup by the provider's message
id through the `SmsStore`, STOP/START/HELP, the keyed dispatcher (order per sender, retries,
dead letters), the deadline, status callbacks.

Reading, checking, parsing and storing a request (the store's record is on the database thread
all adapters share) happen in a turn of the adapter's `IntakeGate` (``INTAKE``); past its cap
the request is answered 503 with Retry-After, nothing stored: the provider's retry is a first.

Replies (``sms.reply``): a provider with a reply format of its own (``replies_in_answer``) gets
those sent before the deadline in the webhook's answer; every other reply goes out through the
provider's REST API after the webhook was answered (`gateway.sms_replies`), and one that
cannot be sent fails the message as a consumer error would (gateway.replies).
"""

from __future__ import annotations

import abc
import asyncio
import logging
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, ClassVar

from gateway.adapters import AdapterHealth, DeployRisk, Listener, ProtocolAdapter
from gateway.exceptions import SmsSendError
from gateway.intakes import BUSY_BODY, IntakeBusy, IntakeGate, refused_busy
from gateway.options import OptionSet
from gateway.pipeline import DispatcherClosed, KeyedDispatcher
from gateway.sms import (
    SmsRecord,
    SmsStore,
    build_sms_scope,
    keyword_action,
    load_store,
    run_sms_app,
)
from gateway.sms_replies import Exchange, RestReplies
from gateway.sms_rest import RestSmsSender
from gateway.sms_wire import (
    TEXT,
    Answer,
    InboundSms,
    Malformed,
    StatusUpdate,
    WebhookRequest,
    read_body,
    read_request,
    record_numbers,
    respond,
    webhook_options,
)
from gateway.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "Answer",
    "InboundSms",
    "Malformed",
    "SmsWebhookAdapter",
    "StatusUpdate",
    "WebhookRequest",
    "webhook_options",
]

logger = logging.getLogger("gateway.sms")


class SmsWebhookAdapter(ProtocolAdapter):
    """Serves one SMS provider's webhook (and status callbacks) on the gateway's HTTP server."""

    protocol = "sms"
    provider: ClassVar[str]
    """The scope's ``provider``."""
    OPTIONS: ClassVar[OptionSet]
    SECRETS: ClassVar[tuple[str, ...]] = ()
    """Keys without which every webhook is refused (403); ``check --deploy`` warns of them."""
    methods: ClassVar[frozenset[str]] = frozenset({"POST"})
    replies_in_answer: ClassVar[bool] = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.values = values = self.OPTIONS.parse(self.context.options)
        self.deadline = float(values["DEADLINE"])
        self.store: SmsStore = load_store(values["STORE"])
        self.sender = self.sms_sender(self.context.options, self.store)
        self.replies = RestReplies(self.sender, self.store)
        self.dispatcher: KeyedDispatcher | None = None
        self.gate = IntakeGate(values["INTAKE"])  # reading, checking, storing: INTAKE's cap
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._background: set[asyncio.Task[None]] = set()
        self._stopped = asyncio.Event()

    # What a provider's adapter writes.

    @classmethod
    @abc.abstractmethod
    def sms_sender(cls, options: Mapping[str, Any], store: SmsStore) -> RestSmsSender:
        """The outbound sender `gateway.sms.asend_sms` uses for this adapter's OPTIONS."""

    @abc.abstractmethod
    def verify(self, request: WebhookRequest) -> str | None:
        """None when the provider signed the request, else why not (answered 403); raises
        Malformed for a body it cannot read (answered 400)."""

    @abc.abstractmethod
    def parse(self, request: WebhookRequest) -> InboundSms | StatusUpdate | None:
        """The message or status a verified request carries (None: an event to ignore)."""

    def answer(self, replies: list[str], message: InboundSms | None) -> Answer:
        """The provider's success answer; `replies` only when ``replies_in_answer``."""
        return Answer(204)

    async def assemble(self, part: InboundSms) -> InboundSms | None:
        """The whole message once `part` completes it (multi-part SMS); None until then."""
        return part

    # The adapter contract.

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> list[str]:
        """Every problem with OPTIONS, one sentence each."""
        return cls.OPTIONS.check(options)

    @classmethod
    def deploy_risks(cls, options: Mapping[str, Any]) -> list[DeployRisk]:
        """A missing secret: the webhook refuses every request (gateway.W104)."""
        return [
            DeployRisk(
                "gateway.W104",
                f'OPTIONS["{key}"] is not set: the SMS webhook refuses every request (403).',
                f'Set it from the environment: os.environ.get("{cls.provider.upper()}_{key}").',
            )
            for key in cls.SECRETS
            if not options.get(key)
        ]

    async def start(self) -> list[Listener]:
        self.dispatcher = KeyedDispatcher(
            self.protocol,
            max_in_flight=int(self.values["MAX_IN_FLIGHT"]),
            retry=self.values["RETRY"],
            dead_letter=self.context.dead_letter,
            metrics=self.context.metrics,
        )
        for key in self._missing_secrets():
            logger.warning(
                'OPTIONS["%s"] is not set: %s refuses every webhook (403) until it is.',
                key,
                self.values["WEBHOOK_PATH"],
            )
        methods = "/".join(sorted(self.methods))
        return [Listener("sms", f"{methods} {self.values['WEBHOOK_PATH']}")]

    def http_routes(self) -> Mapping[str, ASGIApp]:
        return {self.values["WEBHOOK_PATH"]: self.webhook, self.values["STATUS_PATH"]: self.webhook}

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

    def _missing_secrets(self) -> list[str]:
        return [key for key in self.SECRETS if not self.values[key]]

    # The webhook.

    async def webhook(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The provider's webhook: inbound messages and delivery reports alike."""
        try:
            async with self.gate.turn():
                taken = await self._take(scope, receive, send)
        except IntakeBusy as exc:
            await self._busy(send, str(exc))
            return
        if taken is None:
            return  # refused, and answered
        event, message = taken
        if isinstance(event, InboundSms):
            replies = [] if message is None else await self.deliver(message)
            await respond(send, self.answer(replies, event))
            return
        await respond(send, self.answer([], None))

    async def _take(
        self, scope: Scope, receive: Receive, send: Send
    ) -> tuple[InboundSms | StatusUpdate | None, InboundSms | None] | None:
        """Read, check, parse, store: the event and the message to run the app on (None: a
        duplicate, a part, a status); None once the request was refused and answered."""
        request = await self._verified(scope, receive, send)
        if request is None:
            return None
        try:
            event = self.parse(request)
        except Malformed as exc:
            await self._refuse(send, 400, f"Bad Request: {exc}")
            return None
        if isinstance(event, InboundSms):
            return event, await self._taken(event)
        if isinstance(event, StatusUpdate):
            await self._status(event)
        return event, None

    async def _verified(self, scope: Scope, receive: Receive, send: Send) -> WebhookRequest | None:
        """The whole request once verified, or None after answering 405 / 413 / 403."""
        if scope["method"] not in self.methods:
            allow = ", ".join(sorted(self.methods)).encode()
            await self._refuse(send, 405, "Method Not Allowed", allow=allow)
            return None
        body = await read_body(receive)
        if body is None:
            await self._refuse(send, 413, "Request Entity Too Large")
            return None
        if missing := self._missing_secrets():
            await self._refuse(send, 403, f"Forbidden: no {missing[0]} to check signatures with")
            return None
        request = read_request(
            scope, body, self.values["PUBLIC_URL"], self.values["TRUST_FORWARDED_HEADERS"]
        )
        try:
            reason = self.verify(request)
        except Malformed as exc:  # a body that cannot even be read for its signature
            await self._refuse(send, 400, f"Bad Request: {exc}")
            return None
        if reason is not None:
            await self._refuse(send, 403, f"Forbidden: {reason}")
            return None
        return request

    async def _refuse(self, send: Send, status: int, text: str, allow: bytes | None = None) -> None:
        self.context.metrics.inc(self.protocol, "rejected")
        logger.warning("%s SMS webhook answered %d: %s", self.provider, status, text)
        headers = [(b"allow", allow)] if allow else []
        await respond(send, Answer(status, f"{text}\n".encode(), TEXT), headers)

    async def _busy(self, send: Send, detail: str) -> None:
        """Past the ``INTAKE`` cap: 503 with Retry-After, nothing stored; the provider retries."""
        what, metrics = f"{self.provider} SMS webhook", self.context.metrics
        headers = refused_busy(logger, metrics, self.protocol, what, self.gate.limits, detail)
        await self.gate.busy_hold.hold()
        await respond(send, Answer(503, BUSY_BODY, TEXT), headers)

    async def _status(self, update: StatusUpdate) -> None:
        try:
            await self.store.update_status(update.sid, update.status, update.error)
        except Exception:
            logger.exception("Could not update the status of SMS %s.", update.sid)

    # One inbound message.

    async def _taken(self, part: InboundSms) -> InboundSms | None:
        """Dedup and assembly: the whole message to run the application on, once."""
        if not await self._first_time(part):
            logger.info("SMS %s was already received; not handled again.", part.message_id)
            self.context.metrics.inc(self.protocol, "rejected")
            return None
        return await self.assemble(part)

    async def deliver(self, message: InboundSms) -> list[str]:
        """Keywords, then the application; the replies for the answer. A provider's adapter
        calls it itself for a message it completes outside a webhook (a multi-part timeout)."""
        scope = dict(
            build_sms_scope(
                provider=self.provider,
                adapter=self.context.name,
                from_=message.from_,
                to=message.to,
                message_id=message.message_id,
                media=message.media,
                country=message.country,
                extra=message.extra,
                state=self.context.state,
            )
        )
        action = keyword_action(message.body)
        if action is not None:
            return await self._keyword(action, scope)
        return await self._run_within_deadline(Exchange(scope, message.body))

    async def _first_time(self, part: InboundSms) -> bool:
        if part.message_id in self._seen:
            return False
        self._seen[part.message_id] = None
        if len(self._seen) > 10_000:
            self._seen.popitem(last=False)
        from_, to = record_numbers(part.from_, part.to)
        record = SmsRecord("inbound", part.message_id, from_, to, part.body, "received", part.media)
        try:
            return await self.store.record(record)
        except Exception:
            # The store is down: handle the message anyway; in-process dedup still holds.
            logger.exception("Could not store inbound SMS %s.", part.message_id)
            return True

    async def _keyword(self, action: str, scope: dict[str, Any]) -> list[str]:
        sender = str(scope["from"])
        if action == "help":
            text = self.values["HELP_TEXT"]
            if text and not self.replies_in_answer:
                self._spawn(self._send_help(scope, str(text)))
            return [str(text)] if text and self.replies_in_answer else []
        await self.store.set_opted_out(sender, action == "opt_out")
        logger.info("%s opted %s.", sender, "out" if action == "opt_out" else "back in")
        return []

    async def _send_help(self, scope: Mapping[str, Any], text: str) -> None:
        try:
            await self.replies.send(scope, {"type": "sms.reply", "body": text})
        except SmsSendError:
            logger.exception("SMS %s: the HELP answer could not be sent.", scope["message_id"])

    async def _run_within_deadline(self, exchange: Exchange) -> list[str]:
        self._spawn(self._run(exchange))
        try:
            async with asyncio.timeout(self.deadline):
                await exchange.settled.wait()
        except TimeoutError:
            logger.warning(
                "SMS %s: past the %.1fs deadline, answering now.",
                exchange.scope["message_id"],
                self.deadline,
            )
        exchange.answered.set()
        return [str(message["body"]) for message in exchange.in_answer]

    def _spawn(self, work: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def _run(self, exchange: Exchange) -> None:
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
        finally:
            exchange.settled.set()
        if not outcome.handled:
            if not exchange.answered.is_set():
                exchange.in_answer.clear()  # a failed message is answered without replies
            await self._mark_failed(scope["message_id"], repr(outcome.error))

    async def _mark_failed(self, sid: str, error: str) -> None:
        try:
            await self.store.mark_failed(sid, error)
        except Exception:
            logger.exception("Could not mark SMS %s as failed.", sid)

    async def _call_app(self, exchange: Exchange) -> None:
        """The application, then the replies it left for after the answer (an attempt whose
        replies cannot be sent fails like a consumer error: gateway.replies)."""
        exchange.in_answer.clear()  # a retried attempt starts over
        exchange.later.clear()

        async def sent(message: Message) -> None:
            if message.get("type") == "sms.reply":
                await self._reply(exchange, message)
                return
            await self.sender.send(
                message["to"],
                message["body"],
                media_urls=message.get("media_urls", ()),
                from_=message.get("from"),
            )

        await run_sms_app(
            self.context.app, exchange.scope, exchange.body, sent, stopped=self._stopped
        )
        exchange.settled.set()  # the webhook may be answered now
        if exchange.later:
            await exchange.answered.wait()
            await self.replies.send_later(exchange)

    async def _reply(self, exchange: Exchange, message: Message) -> None:
        """In the answer while it is open (a provider with a reply format), else over REST:
        after the answer once the application returned, or at once when it was given."""
        if await self.replies.opted_out(exchange.scope):
            return
        if not exchange.answered.is_set():
            (exchange.in_answer if self.replies_in_answer else exchange.later).append(message)
            return
        await self.replies.send(exchange.scope, message)  # a failure raises in the consumer
