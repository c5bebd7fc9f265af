"""`DatabaseCheckpointStore`: the IMAP adapter's checkpoints as `ImapCheckpoint` rows.

It implements `gateway.email_store.ImapCheckpointStore`, the default of the IMAP adapter's
``CHECKPOINT_STORE`` option.
"""

from __future__ import annotations

from django_app.models.imap import ImapCheckpoint
from gateway.db import database_sync_to_async

__all__ = ["DatabaseCheckpointStore"]


class DatabaseCheckpointStore:
    """One `ImapCheckpoint` row per account and mailbox."""

    async def resume_after(self, account: str, mailbox: str, uidvalidity: int) -> int:
        """The UID to resume after; 0 (rescan) when unknown or the UIDVALIDITY changed."""
        resume = database_sync_to_async(ImapCheckpoint.resume_after)
        return await resume(account, mailbox, uidvalidity)

    async def advance(self, account: str, mailbox: str, uidvalidity: int, uid: int) -> None:
        """Record that every message up to `uid` is done with under `uidvalidity`."""
        await database_sync_to_async(ImapCheckpoint.advance)(account, mailbox, uidvalidity, uid)
