"""Admin for IMAP checkpoints: where each mailbox got to; deleting one makes it rescan."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib import admin
from django.http import HttpRequest

from django_app.models.imap import ImapCheckpoint

if TYPE_CHECKING:
    _ImapCheckpointAdmin = admin.ModelAdmin[ImapCheckpoint]
else:  # ModelAdmin is not subscriptable at run time
    _ImapCheckpointAdmin = admin.ModelAdmin


@admin.register(ImapCheckpoint)
class ImapCheckpointAdmin(_ImapCheckpointAdmin):
    """Written by the IMAP adapter; an operator reads it, or deletes it to rescan unseen mail."""

    list_display = ["account", "mailbox", "uidvalidity", "last_uid", "updated_at"]
    search_fields = ["account", "mailbox"]
    readonly_fields = ["account", "mailbox", "uidvalidity", "last_uid", "updated_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
