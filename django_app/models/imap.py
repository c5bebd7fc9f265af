"""Where the IMAP adapter got to in each mailbox, so a restart resumes instead of rescanning."""

from __future__ import annotations

from django.db import models

__all__ = ["ImapCheckpoint"]


class ImapCheckpoint(models.Model):
    """The last UID handled in one mailbox, valid only for the UIDVALIDITY it was taken under."""

    account = models.CharField(max_length=255, help_text="user@host:port of the IMAP account.")
    mailbox = models.CharField(max_length=255)
    uidvalidity = models.PositiveBigIntegerField(
        help_text="The mailbox's UIDVALIDITY; when the server changes it, every UID is new."
    )
    last_uid = models.PositiveBigIntegerField(
        default=0, help_text="Messages up to this UID were handled, dead-lettered or skipped."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        app_label = "gateway"
        verbose_name = "IMAP checkpoint"
        constraints = [
            models.UniqueConstraint(fields=["account", "mailbox"], name="gateway_imap_checkpoint")
        ]

    def __str__(self) -> str:
        return f"{self.account}/{self.mailbox} uidvalidity={self.uidvalidity} uid<={self.last_uid}"

    @classmethod
    def resume_after(cls, account: str, mailbox: str, uidvalidity: int) -> int:
        """The UID to resume after; 0 (rescan) when the mailbox's UIDVALIDITY changed."""
        row = cls.objects.filter(account=account, mailbox=mailbox).first()
        if row is None or row.uidvalidity != uidvalidity:
            return 0
        return row.last_uid

    @classmethod
    def advance(cls, account: str, mailbox: str, uidvalidity: int, uid: int) -> None:
        """Record that every message up to `uid` is done with under `uidvalidity`."""
        cls.objects.update_or_create(
            account=account,
            mailbox=mailbox,
            defaults={"uidvalidity": uidvalidity, "last_uid": uid},
        )
