"""Admin for SMS messages and opt-outs: browse, search, filter by status and direction."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib import admin

from django_app.models.sms import SmsMessage, SmsOptOut

if TYPE_CHECKING:
    _MessageAdmin = admin.ModelAdmin[SmsMessage]
    _OptOutAdmin = admin.ModelAdmin[SmsOptOut]
else:  # ModelAdmin is not subscriptable at run time
    _MessageAdmin = _OptOutAdmin = admin.ModelAdmin


@admin.register(SmsMessage)
class SmsMessageAdmin(_MessageAdmin):
    """Messages are written by the gateway; the admin reads them."""

    list_display = ["created_at", "direction", "from_number", "to_number", "status", "short_body"]
    list_filter = ["direction", "status"]
    search_fields = ["sid", "from_number", "to_number", "body"]
    date_hierarchy = "created_at"
    readonly_fields = [
        "direction",
        "sid",
        "from_number",
        "to_number",
        "body",
        "status",
        "media",
        "error",
        "created_at",
        "updated_at",
        "status_at",
    ]

    @admin.display(description="body")
    def short_body(self, message: SmsMessage) -> str:
        return message.body if len(message.body) <= 60 else message.body[:59] + "…"


@admin.register(SmsOptOut)
class SmsOptOutAdmin(_OptOutAdmin):
    """Numbers that sent STOP; deleting a row opts the number back in."""

    list_display = ["number", "opted_out_at"]
    search_fields = ["number"]
