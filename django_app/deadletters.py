"""Dead letters in the database: the hook that stores them, and replay through the application.

`store_dead_letter` is the default ``GATEWAY["DEAD_LETTER_HANDLER"]``: it saves a `DeadLetter`
row (the traceback with it) and logs one line; if the database fails, the whole letter is
logged instead, and the hook never raises. `replay` / `areplay` run a stored event through
the root application again (``settings.ASGI_APPLICATION`` unless one is given).
"""

from __future__ import annotations

import base64
import logging
import traceback
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from asgiref.sync import async_to_sync
from django.core.exceptions import ImproperlyConfigured

from gateway.db import database_sync_to_async
from gateway.replies import failure_policy, logs_failure, reply_failures

if TYPE_CHECKING:
    from django_app.models.deadletters import DeadLetter
    from gateway.pipeline import DeadLetter as Letter
    from gateway.types import ASGIApp, EmailScope, Message, MqttPublishEvent

__all__ = ["Replayer", "areplay", "register_replayer", "replay", "store_dead_letter"]

logger = logging.getLogger("gateway.deadletter")

Replayer = Callable[["ASGIApp", dict[str, Any], bytes], Awaitable[None]]
"""Runs one stored event (scope, payload) through an application; raises if it fails."""

_REPLAYERS: dict[str, Replayer] = {}


def register_replayer(protocol: str, replayer: Replayer) -> None:
    """Teach `replay` how to run dead letters of one protocol."""
    _REPLAYERS[protocol] = replayer


# --- storing ---------------------------------------------------------------------------------


def _text(value: str) -> str:
    """Text a PostgreSQL text column accepts: NUL is the one character it refuses."""
    return value.replace("\x00", "\ufffd")


def _save(letter: Letter) -> None:
    from django_app.models.deadletters import DeadLetter, encode_scope

    DeadLetter.objects.create(
        protocol=letter.protocol,
        adapter=str(letter.scope.get("adapter") or ""),
        key=_text(letter.key),
        scope=encode_scope(letter.scope),
        payload=letter.payload,
        error=_text(letter.error),
        attempts=letter.attempts,
        failed_at=letter.failed_at,
    )


async def store_dead_letter(letter: Letter) -> None:
    """Store the letter as a `DeadLetter` row and log one line of it; never raises."""
    try:
        await database_sync_to_async(_save)(letter)
        # The row keeps the traceback (the admin shows it): the log gets its first line.
        logger.error(
            "dead letter: protocol=%s key=%r attempts=%d error=%s (stored, the traceback"
            " is in the admin)",
            letter.protocol,
            letter.key,
            letter.attempts,
            letter.error.partition("\n")[0],
        )
    except Exception:
        # The letter must not vanish with the database: log all of it, payload included.
        logger.exception(
            "could not store dead letter: protocol=%s key=%r attempts=%d failed_at=%s "
            "scope=%r payload_base64=%s error=%s",
            letter.protocol,
            letter.key,
            letter.attempts,
            letter.failed_at.isoformat(),
            letter.scope,
            base64.b64encode(letter.payload).decode("ascii"),
            letter.error,
        )


# --- replaying -------------------------------------------------------------------------------


def _root_application() -> ASGIApp:
    from django.conf import settings
    from django.utils.module_loading import import_string

    path = getattr(settings, "ASGI_APPLICATION", None)
    if not path:
        raise ImproperlyConfigured(
            "Replaying dead letters needs settings.ASGI_APPLICATION (or pass app=...)."
        )
    application: ASGIApp = import_string(path)
    return application


async def _replay_mqtt(app: ASGIApp, scope: dict[str, Any], payload: bytes) -> None:
    from gateway.mqtt import apublish, run_mqtt_app

    async def publish(event: MqttPublishEvent) -> None:
        await apublish(
            event["topic"],
            event["payload"],
            event.get("qos", 0),
            event.get("retain", False),
            properties=event.get("properties"),
        )

    # The message was delivered before: say so, as MQTT's DUP flag does.
    await run_mqtt_app(app, {**scope, "dup": True}, payload, publish)


async def _replay_email(app: ASGIApp, scope: dict[str, Any], payload: bytes) -> None:
    from gateway.email_run import run_email_app, send_mails

    attempt = int(scope.get("attempt") or 1) + 1
    email_scope = cast("EmailScope", {**scope, "attempt": attempt})
    result = await run_email_app(app, email_scope, payload, standalone=True)
    if result.rejection is not None:
        # The sender is long gone: a rejection can no longer reach it, only the log.
        logger.warning(
            "replayed mail for %r rejected by the application: %s %s",
            scope.get("recipient"),
            result.rejection["code"],
            result.rejection["reason"],
        )
    # A mail that cannot be sent fails the replay (ReplyNotSent), as it failed the delivery.
    await send_mails(result.outbox, result.policies)


async def _replay_sms(app: ASGIApp, scope: dict[str, Any], payload: bytes) -> None:
    from gateway.sms import run_sms_app

    # The webhook was answered long ago: replies go out through the provider's REST API.
    outgoing: list[Message] = []

    async def sent(message: Message) -> None:
        if message["type"] == "sms.reply":
            outgoing.append({**message, "to": str(scope["from"]), "from": scope.get("to")})
        else:
            outgoing.append(message)

    await run_sms_app(app, scope, payload.decode("utf-8"), sent)
    for message in outgoing:
        await _replay_send(message, scope.get("adapter"))


async def _replay_send(message: Message, adapter: str | None) -> None:
    """One replayed SMS: opted-out numbers get nothing; a failure fails the replay unless
    the consumer chose ``on_failure="log"``."""
    from gateway.exceptions import SmsOptedOut
    from gateway.sms import asend_sms

    policy = failure_policy("log" if logs_failure(message) else "fail")
    with reply_failures(message, policy):
        try:
            await asend_sms(
                message["to"],
                message["body"],
                media_urls=message.get("media_urls", ()),
                from_=message.get("from"),
                adapter=adapter,
            )
        except SmsOptedOut:
            logger.info("replayed SMS to %s not sent: the number opted out (STOP)", message["to"])


register_replayer("mqtt", _replay_mqtt)
register_replayer("email", _replay_email)
register_replayer("sms", _replay_sms)


def _record(dead_letter: DeadLetter, error: BaseException | None) -> None:
    dead_letter.replay_count += 1
    fields = ["replay_count"]
    if error is None:
        dead_letter.replayed_at = datetime.now(UTC)
        fields.append("replayed_at")
    else:
        failed = "".join(traceback.format_exception(error))
        dead_letter.error = f"replay {dead_letter.replay_count} failed: {error!r}\n{failed}"
        dead_letter.failed_at = datetime.now(UTC)
        fields += ["error", "failed_at"]
    dead_letter.save(update_fields=fields)


async def areplay(dead_letter: DeadLetter, app: ASGIApp | None = None) -> None:
    """Run a dead letter through the application again; record the result, raise on failure."""
    replayer = _REPLAYERS.get(dead_letter.protocol)
    if replayer is None:
        raise ValueError(f"dead letters of protocol {dead_letter.protocol!r} cannot be replayed")
    application = app if app is not None else _root_application()
    try:
        await replayer(application, dead_letter.get_scope(), dead_letter.get_payload())
    except Exception as exc:
        await database_sync_to_async(_record)(dead_letter, exc)
        raise
    await database_sync_to_async(_record)(dead_letter, None)


def replay(dead_letter: DeadLetter, app: ASGIApp | None = None) -> None:
    """Sync `areplay`, for admin actions and management commands."""
    async_to_sync(areplay)(dead_letter, app)
