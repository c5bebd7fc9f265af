"""Admin for dead letters: browse and search them, read payload and error, replay them."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from django_app.deadletters import replay
from django_app.models.deadletters import DeadLetter

if TYPE_CHECKING:
    _ModelAdmin = admin.ModelAdmin[DeadLetter]
else:  # ModelAdmin is generic only in django-stubs
    _ModelAdmin = admin.ModelAdmin

DETAIL_FIELDS = (
    "protocol",
    "adapter",
    "key",
    "attempts",
    "failed_at",
    "replayed_at",
    "replay_count",
    "payload_display",
    "error_display",
    "scope_display",
)


def payload_text(payload: bytes) -> str:
    """The payload as text when it is printable UTF-8, else as hex."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and all(c.isprintable() or c in "\n\r\t" for c in text):
        return text
    return f"(binary, {len(payload)} bytes, hex) {payload.hex(' ')}"


@admin.register(DeadLetter)
class DeadLetterAdmin(_ModelAdmin):
    """Dead letters are written by the gateway; the admin reads and replays them."""

    list_display = ["failed_at", "protocol", "adapter", "key", "attempts", "replayed_at"]
    list_filter = ["protocol", "adapter", "failed_at", "replayed_at"]
    search_fields = ["key", "error"]
    date_hierarchy = "failed_at"
    actions = ["replay_selected"]
    fields = DETAIL_FIELDS
    readonly_fields = DETAIL_FIELDS

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: DeadLetter | None = None) -> bool:
        return False  # the detail page is read-only

    def has_replay_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("gateway.change_deadletter")

    @admin.display(description="payload")
    def payload_display(self, letter: DeadLetter) -> str:
        return format_html("<pre>{}</pre>", payload_text(letter.get_payload()))

    @admin.display(description="error")
    def error_display(self, letter: DeadLetter) -> str:
        return format_html("<pre>{}</pre>", letter.error)

    @admin.display(description="scope")
    def scope_display(self, letter: DeadLetter) -> str:
        return format_html("<pre>{}</pre>", json.dumps(letter.scope, indent=2, sort_keys=True))

    @admin.action(description="Replay selected dead letters", permissions=["replay"])
    def replay_selected(self, request: HttpRequest, queryset: QuerySet[DeadLetter]) -> None:
        """Run each selected letter through the application again and report the results."""
        failures: list[str] = []
        replayed = 0
        for letter in queryset:
            try:
                replay(letter)
            except Exception as exc:
                failures.append(f"#{letter.pk} ({letter.key}): {exc!r}")
            else:
                replayed += 1
        if replayed:
            self.message_user(request, f"Replayed {replayed} dead letter(s).", messages.SUCCESS)
        if failures:
            self.message_user(
                request,
                f"{len(failures)} replay(s) failed: " + "; ".join(failures),
                messages.ERROR,
            )
