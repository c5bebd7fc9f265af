"""SMS helpers: send from anywhere, number normalisation, keywords, the message store.

``send_sms`` / ``asend_sms`` send through the REST API of the configured SMS adapter (the
first ``GATEWAY["ADAPTERS"]`` entry whose backend makes an ``sms_sender``, or the one named),
from any process: a view, an admin action, a management command. Opted-out numbers are
never sent to. The store keeps inbound and outbound messages and opt-outs; the default is
the database (`django_app.models.sms.DatabaseSmsStore`), `"memory"` keeps them in the process.
"""

from __future__ import annotations

import asyncio
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Literal, Protocol

from asgiref.sync import async_to_sync
from django.utils.module_loading import import_string

from gateway.exceptions import ImproperlyConfiguredGateway, SmsOptedOut, SmsSendError
from gateway.run_event import run_one_event
from gateway.types import ASGIApp, Message, SmsMedia, SmsScope

__all__ = [
    "DEFAULT_STORE",
    "SPEC_VERSION",
    "MemorySmsStore",
    "SentMessage",
    "SmsOptedOut",
    "SmsRecord",
    "SmsSendError",
    "SmsSender",
    "SmsStore",
    "asend_sms",
    "build_sms_scope",
    "is_e164",
    "keyword_action",
    "load_store",
    "normalize_number",
    "now",
    "number_country",
    "opt_out_key",
    "phonenumbers_module",
    "run_sms_app",
    "send_sms",
    "split_channel",
    "status_moves_forward",
]

SPEC_VERSION = "1.0"
"""The version of docs/specs/sms.md the scopes follow."""
DEFAULT_STORE = "django_app.models.sms.DatabaseSmsStore"

Direction = Literal["inbound", "outbound"]
KeywordAction = Literal["opt_out", "opt_in", "help"]

OPT_OUT_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
OPT_IN_WORDS = frozenset({"START", "YES", "UNSTOP"})
HELP_WORDS = frozenset({"HELP", "INFO"})

# Rank of each provider status: a status callback may only raise it. Terminal states share
# a rank so that "delivered" never turns into "failed" after the fact, nor the reverse.
_STATUS_RANK = {
    "accepted": 0,
    "scheduled": 0,
    "queued": 1,
    "sending": 2,
    "sent": 3,
    "delivered": 4,
    "undelivered": 4,
    "failed": 4,
    "canceled": 4,
    "read": 5,
    "receiving": 1,
    "received": 2,
}


def keyword_action(body: str) -> KeywordAction | None:
    """What a carrier keyword asks for (``STOP`` -> opt_out), or None for an ordinary text."""
    word = body.strip().upper()
    if word in OPT_OUT_WORDS:
        return "opt_out"
    if word in OPT_IN_WORDS:
        return "opt_in"
    return "help" if word in HELP_WORDS else None


def status_moves_forward(current: str, new: str) -> bool:
    """True when ``new`` is later than ``current``; unknown statuses never move back."""
    if new not in _STATUS_RANK:
        return current not in _STATUS_RANK
    return current not in _STATUS_RANK or _STATUS_RANK[new] > _STATUS_RANK[current]


# --- numbers -------------------------------------------------------------------------------


E164 = re.compile(r"\+[1-9]\d{1,14}")
PHONE_PREFIX = re.compile(r"\+[1-9]\d{0,14}")
NUMBER_PUNCTUATION = re.compile(r"[\s\-.()/]")
_CHANNELS = ("whatsapp:", "sms:", "tel:")


def split_channel(number: str) -> tuple[str, bool]:
    """Strip a ``whatsapp:`` (or ``sms:`` / ``tel:``) prefix; say whether it was WhatsApp."""
    text = number.strip()
    lowered = text.lower()
    for channel in _CHANNELS:
        if lowered.startswith(channel):
            return text[len(channel) :].strip(), channel == "whatsapp:"
    return text, False


def normalize_number(number: str) -> str:
    """E.164 for anything that is a phone number; short codes and sender ids unchanged."""
    text, _ = split_channel(number)
    if E164.fullmatch(text):
        return text  # already normalised: the common case, from the provider
    parsed = _parse_with_phonenumbers(text)
    if parsed is not None:
        return parsed
    compact = NUMBER_PUNCTUATION.sub("", text.replace("(0)", ""))
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    return compact if E164.fullmatch(compact) else text


def is_e164(number: str) -> bool:
    """True for ``+`` and 2-15 digits, the first not zero."""
    return E164.fullmatch(number) is not None


def number_country(number: str) -> str | None:
    """The ISO country of an E.164 number, when phonenumbers is installed and knows it."""
    module = phonenumbers_module()
    if module is None or not is_e164(number):
        return None
    try:
        parsed = module.parse(number, None)
    except module.NumberParseException:
        return None
    region: str | None = module.region_code_for_number(parsed)
    if not region:
        # Not a valid number (a test range, a new block): the calling code's main country.
        region = module.region_code_for_country_code(parsed.country_code)
    return region if region and region != "001" else None


@lru_cache(maxsize=1)
def phonenumbers_module() -> Any:
    try:
        import phonenumbers
    except ImportError:
        return None
    return phonenumbers


def _parse_with_phonenumbers(text: str) -> str | None:
    module = phonenumbers_module()
    if module is None or not text.lstrip().startswith(("+", "00")):
        return None
    candidate = "+" + text.lstrip()[2:] if text.lstrip().startswith("00") else text
    try:
        parsed = module.parse(candidate, None)
    except module.NumberParseException:
        return None
    formatted: str = module.format_number(parsed, module.PhoneNumberFormat.E164)
    return formatted if is_e164(formatted) else None


# --- the message store -----------------------------------------------------------------------


@dataclass(frozen=True)
class SmsRecord:
    """One message as the store keeps it."""

    direction: Direction
    sid: str
    from_number: str
    to_number: str
    body: str
    status: str
    media: list[SmsMedia] = field(default_factory=list)
    error: str = ""


class SmsStore(Protocol):
    """Where messages and opt-outs live; every method is async."""

    async def record(self, record: SmsRecord) -> bool:
        """Store a message; False when its sid is already stored (a replay)."""

    async def mark_failed(self, sid: str, error: str) -> None:
        """The application failed on this message."""

    async def update_status(self, sid: str, status: str, error: str = "") -> bool:
        """Move a message's status forward; False when unknown or not forward."""

    async def set_opted_out(self, number: str, opted_out: bool) -> None:
        """Record an opt-out (STOP) or opt-in (START) of a number."""

    async def is_opted_out(self, number: str) -> bool:
        """True when the number opted out."""


class MemorySmsStore:
    """Keeps messages (the newest ``max_messages``) and opt-outs in this process."""

    def __init__(self, max_messages: int = 100_000) -> None:
        self.max_messages = max_messages
        self.messages: OrderedDict[str, SmsRecord] = OrderedDict()
        self.opted_out: set[str] = set()

    async def record(self, record: SmsRecord) -> bool:
        if record.sid in self.messages:
            return False
        self.messages[record.sid] = record
        while len(self.messages) > self.max_messages:
            self.messages.popitem(last=False)
        return True

    async def mark_failed(self, sid: str, error: str) -> None:
        if sid in self.messages:
            self.messages[sid] = replace(self.messages[sid], status="failed", error=error)

    async def update_status(self, sid: str, status: str, error: str = "") -> bool:
        stored = self.messages.get(sid)
        if stored is None or not status_moves_forward(stored.status, status):
            return False
        self.messages[sid] = replace(stored, status=status, error=error or stored.error)
        return True

    async def set_opted_out(self, number: str, opted_out: bool) -> None:
        (self.opted_out.add if opted_out else self.opted_out.discard)(opt_out_key(number))

    async def is_opted_out(self, number: str) -> bool:
        return opt_out_key(number) in self.opted_out


def opt_out_key(number: str) -> str:
    """The form a number's opt-out is kept under: normalised, without ``whatsapp:``."""
    return normalize_number(split_channel(number)[0])


def load_store(setting: Any) -> SmsStore:
    """The store a ``STORE`` option names: a dotted path to a class, or ``"memory"``."""
    if setting is None:
        setting = DEFAULT_STORE
    if setting == "memory":
        return MemorySmsStore()
    if not isinstance(setting, str):
        raise ImproperlyConfiguredGateway(f"STORE must be a dotted path or 'memory': {setting!r}")
    store_class = import_string(setting)
    store: SmsStore = store_class()
    return store


def now() -> datetime:
    """The time stores stamp records with."""
    return datetime.now(UTC)


# --- scopes and running an application ------------------------------------------------------


def build_sms_scope(
    *,
    provider: str,
    adapter: str,
    from_: str,
    to: str,
    message_id: str,
    media: Sequence[SmsMedia] = (),
    country: str | None = None,
    extra: Mapping[str, str] | None = None,
    state: Mapping[str, Any] | None = None,
) -> SmsScope:
    """The ``sms`` scope of docs/specs/sms.md; numbers are normalised here, for every provider."""
    sender, whatsapp = split_channel(from_)
    sender = normalize_number(sender)
    scope: SmsScope = {
        "type": "sms",
        "asgi": {"version": "3.0", "spec_version": SPEC_VERSION},
        "provider": provider,
        "adapter": adapter,
        "from": sender,
        "to": normalize_number(split_channel(to)[0]),
        "whatsapp": whatsapp,
        "country": country or number_country(sender),
        "message_id": message_id,
        "media": list(media),
        "extra": dict(extra or {}),
    }
    if state is not None:
        scope["state"] = dict(state)  # a shallow copy, as for HTTP
    return scope


async def run_sms_app(
    app: ASGIApp,
    scope: Mapping[str, Any],
    body: str,
    sent: Callable[[Message], Awaitable[None]],
    *,
    stopped: asyncio.Event | None = None,
) -> None:
    """Call `app` on one text message; `sent` gets each ``sms.reply`` / ``sms.send`` event."""

    async def send(message: Message) -> None:
        kind = message.get("type")
        if kind not in ("sms.reply", "sms.send"):
            raise ValueError(f"An sms application cannot send {kind!r} (sms.reply or sms.send).")
        await sent(message)

    await run_one_event(app, scope, {"type": "sms.message", "body": body}, send, stopped=stopped)


# --- sending ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SentMessage:
    """An outbound message the provider accepted."""

    sid: str
    status: str
    to: str
    from_: str


class SmsSender(Protocol):
    """A provider's outbound API, as an SMS adapter class makes it with ``sms_sender()``."""

    async def send(
        self, to: str, body: str, *, media_urls: Sequence[str] = (), from_: str | None = None
    ) -> SentMessage:
        """Send one message; raises SmsOptedOut / SmsSendError."""

    async def close(self) -> None:
        """Release the HTTP client."""


def _adapter(adapter: str | None) -> tuple[str, Mapping[str, Any]]:
    from gateway.conf import gateway_settings

    for entry in gateway_settings.adapters:
        if entry.name == adapter or (
            adapter is None and hasattr(import_string(entry.backend), "sms_sender")
        ):
            return entry.backend, entry.options
    wanted = f"adapter {adapter!r}" if adapter else "SMS adapter (one with sms_sender())"
    raise ImproperlyConfiguredGateway(f'GATEWAY["ADAPTERS"] has no {wanted} to send SMS with.')


async def asend_sms(
    to: str,
    body: str,
    *,
    media_urls: Sequence[str] = (),
    from_: str | None = None,
    adapter: str | None = None,
    store: SmsStore | None = None,
) -> SentMessage:
    """Send an SMS through the configured provider; raises SmsOptedOut / SmsSendError."""
    backend, options = _adapter(adapter)
    # The adapter class makes its provider's sender: gateway names it by its dotted path only.
    make_sender = import_string(backend).sms_sender
    sender: SmsSender = make_sender(options, store or load_store(options.get("STORE")))
    try:
        return await sender.send(to, body, media_urls=media_urls, from_=from_)
    finally:
        await sender.close()


def send_sms(
    to: str,
    body: str,
    *,
    media_urls: Sequence[str] = (),
    from_: str | None = None,
    adapter: str | None = None,
) -> SentMessage:
    """`asend_sms` for synchronous code (views, admin actions, management commands)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError("send_sms() cannot be called from async code; await asend_sms().")
    sent: SentMessage = async_to_sync(asend_sms)(
        to, body, media_urls=media_urls, from_=from_, adapter=adapter
    )
    return sent
