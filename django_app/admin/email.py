"""Admin for inbound email: search, filter by status, read or download the raw message."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from django_app.models.email import InboundEmail

if TYPE_CHECKING:
    _InboundEmailAdmin = admin.ModelAdmin[InboundEmail]
else:  # ModelAdmin is not subscriptable at run time
    _InboundEmailAdmin = admin.ModelAdmin

#: Shown inline up to this many bytes; the download link always has the whole message.
RAW_PREVIEW_BYTES = 200_000


@admin.register(InboundEmail)
class InboundEmailAdmin(_InboundEmailAdmin):
    """Mail is written by the email adapters; the admin reads it."""

    list_display = ["received_at", "source", "sender", "recipient", "subject", "status", "size"]
    list_filter = ["status", "source", "adapter"]
    search_fields = ["subject", "sender", "recipient", "message_id", "raw_sha256"]
    date_hierarchy = "received_at"
    exclude = ["raw"]
    readonly_fields = [
        "message_id",
        "raw_sha256",
        "size",
        "sender",
        "recipient",
        "subject",
        "source",
        "adapter",
        "mailbox",
        "uid",
        "status",
        "attempts",
        "error",
        "received_at",
        "handled_at",
        "raw_message",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="raw message")
    def raw_message(self, email: InboundEmail) -> str:
        raw = bytes(email.raw)
        text = raw[:RAW_PREVIEW_BYTES].decode("utf-8", "replace")
        more = (
            f" (first {RAW_PREVIEW_BYTES} of {len(raw)} bytes)"
            if len(raw) > RAW_PREVIEW_BYTES
            else ""
        )
        url = reverse("admin:gateway_inboundemail_raw", args=[email.pk])
        return format_html(
            '<a href="{}">download .eml</a>{}<pre style="white-space: pre-wrap">{}</pre>',
            url,
            more,
            text,
        )

    def get_urls(self) -> list[URLPattern]:
        raw = path(
            "<int:pk>/raw/",
            self.admin_site.admin_view(self.raw_view),
            name="gateway_inboundemail_raw",
        )
        return [raw, *super().get_urls()]

    def raw_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """The message byte for byte, as message/rfc822."""
        email = get_object_or_404(InboundEmail, pk=pk)
        if not self.has_view_permission(request, email):
            return HttpResponse(status=403)
        response = HttpResponse(bytes(email.raw), content_type="message/rfc822")
        response["Content-Disposition"] = f'attachment; filename="inbound-{email.pk}.eml"'
        return response
