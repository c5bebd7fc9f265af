"""The stores the email adapters keep state in: protocols, and the settings that name them.

`InboundMailStore` is the inbound-mail log and dedup index: the intake asks it whether a
message was already *handled* for a recipient before the application runs, and records the
outcome with the raw bytes after. `ImapCheckpointStore` remembers where the IMAP adapter got
to in each mailbox. The adapters never import an implementation: their ``STORE`` and
``CHECKPOINT_STORE`` options name one by dotted path, `load_mail_store` and
`load_checkpoint_store` load it, and the defaults are the Django app's (`InboundEmail` and
`ImapCheckpoint` rows).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final, Literal, NamedTuple, Protocol

from django.apps import apps
from django.utils.module_loading import import_string

from gateway.exceptions import ImproperlyConfiguredGateway
from gateway.types import EmailScope

__all__ = [
    "DEFAULT_CHECKPOINT_STORE",
    "DEFAULT_MAIL_STORE",
    "ImapCheckpointStore",
    "InboundMailStore",
    "Known",
    "NoMailStore",
    "StoredStatus",
    "checkpoint_store_problems",
    "load_checkpoint_store",
    "load_mail_store",
    "mail_store_problems",
]

DEFAULT_MAIL_STORE: Final = "django_app.inbound_mail.DatabaseMailStore"
DEFAULT_CHECKPOINT_STORE: Final = "django_app.imap_checkpoints.DatabaseCheckpointStore"
_DJANGO_APP: Final = "django_app"

StoredStatus = Literal["handled", "failed", "rejected"]


class Known(NamedTuple):
    """What the store knows about a message and recipient: last status, attempts so far."""

    status: str
    attempts: int


class InboundMailStore(Protocol):
    """Looks messages up before they run and records their outcome (written behind)."""

    async def lookup(self, scope: EmailScope, digest: str) -> Known | None:
        """The last outcome recorded for this message and recipient, or None if never seen."""

    def record(
        self,
        scope: EmailScope,
        digest: str,
        raw: bytes,
        subject: str,
        status: StoredStatus,
        attempts: int,
        error: str = "",
        received_at: datetime | None = None,
    ) -> None:
        """Queue one outcome; it answers lookups at once and is committed soon."""

    async def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every queued record is committed; False if `timeout` passed first."""

    async def aclose(self, timeout: float = 30.0) -> bool:
        """Flush, then release what the store holds; False if records were left unwritten."""


class NoMailStore:
    """Keeps nothing (``STORE: False``): every message is new, so nothing is deduplicated."""

    async def lookup(self, scope: EmailScope, digest: str) -> Known | None:
        return None

    def record(
        self,
        scope: EmailScope,
        digest: str,
        raw: bytes,
        subject: str,
        status: StoredStatus,
        attempts: int,
        error: str = "",
        received_at: datetime | None = None,
    ) -> None:
        return None

    async def flush(self, timeout: float = 30.0) -> bool:
        return True

    async def aclose(self, timeout: float = 30.0) -> bool:
        return True


class ImapCheckpointStore(Protocol):
    """Where the IMAP adapter got to in each mailbox, so a restart resumes there."""

    async def resume_after(self, account: str, mailbox: str, uidvalidity: int) -> int:
        """The UID to resume after; 0 (rescan) when unknown or the UIDVALIDITY changed."""

    async def advance(self, account: str, mailbox: str, uidvalidity: int, uid: int) -> None:
        """Record that every message up to `uid` is done with under `uidvalidity`."""


def mail_store_problems(setting: Any, where: str = "STORE") -> list[str]:
    """What is wrong with a ``STORE`` option: None, True, False or a dotted path to a class."""
    if setting is None or isinstance(setting, bool):
        return []
    return _path_problems(setting, where, "None, True, False or a dotted path to a class")


def checkpoint_store_problems(setting: Any, where: str = "CHECKPOINT_STORE") -> list[str]:
    """What is wrong with a ``CHECKPOINT_STORE`` option: None or a dotted path to a class."""
    if setting is None:
        return []
    return _path_problems(setting, where, "None or a dotted path to a class")


def load_mail_store(setting: Any) -> InboundMailStore:
    """The store a ``STORE`` option names.

    None: the database (`DEFAULT_MAIL_STORE`) when the gateway's Django app is installed,
    else nothing; True: the database; False: nothing (`NoMailStore`); a dotted path: that
    class, called without arguments.
    """
    if setting is None:
        setting = _django_app_installed()
    if setting is False:
        return NoMailStore()
    store: InboundMailStore = _load(DEFAULT_MAIL_STORE if setting is True else setting, "STORE")
    return store


def load_checkpoint_store(setting: Any) -> ImapCheckpointStore:
    """The store a ``CHECKPOINT_STORE`` option names: a dotted path, None for the database."""
    path = DEFAULT_CHECKPOINT_STORE if setting is None else setting
    store: ImapCheckpointStore = _load(path, "CHECKPOINT_STORE")
    return store


def _django_app_installed() -> bool:
    return apps.is_installed(_DJANGO_APP)


def _path_problems(setting: Any, where: str, expected: str) -> list[str]:
    if not isinstance(setting, str):
        return [f"{where} must be {expected}, got {setting!r}"]
    try:
        import_string(setting)
    except ImportError as exc:
        return [f"{where}: cannot import {setting!r}: {exc}"]
    return []


def _load(path: Any, where: str) -> Any:
    if not isinstance(path, str):
        raise ImproperlyConfiguredGateway(f"{where} must be a dotted path to a class: {path!r}")
    try:
        store_class = import_string(path)
    except ImportError as exc:
        raise ImproperlyConfiguredGateway(f"{where}: cannot import {path!r}: {exc}") from exc
    return store_class()
