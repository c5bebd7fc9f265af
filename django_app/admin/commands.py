"""Commands that wait for the device, in the admin: the history, and asking several devices."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from asgiref.sync import async_to_sync
from django.contrib import admin
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from django_app.models.commands import DeviceCommand
from django_app.models.devices import Device
from gateway import mqtt
from gateway.exceptions import CommandTimeout

__all__ = ["Answer", "DeviceCommandAdmin", "ask_devices", "history_table", "shown"]

if TYPE_CHECKING:
    _CommandModelAdmin = admin.ModelAdmin[DeviceCommand]
else:  # not subscriptable at run time
    _CommandModelAdmin = admin.ModelAdmin


def shown(data: bytes | memoryview | None, limit: int = 200) -> str:
    """A payload as text for the admin (hex when it is not UTF-8), cut at `limit` characters."""
    if data is None:
        return ""
    raw = bytes(data)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = f"(hex) {raw.hex()}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class Answer:
    """What became of one device's command, for the results page."""

    device_id: str
    outcome: Literal["answered", "timed out", "failed"]
    text: str


async def _ask(device_id: str, command: str, payload: Any, timeout: float) -> Answer:
    try:
        response = await mqtt.arequest(device_id, command, payload, timeout)
    except CommandTimeout:
        return Answer(device_id, "timed out", f"no answer within {timeout:g}s")
    except Exception as exc:  # no channel layer, broker down: the operator reads why
        return Answer(device_id, "failed", str(exc))
    return Answer(device_id, "answered", shown(response.payload, 2000))


async def _ask_all(
    device_ids: list[str], command: str, payload: Any, timeout: float
) -> list[Answer]:
    return list(await asyncio.gather(*(_ask(d, command, payload, timeout) for d in device_ids)))


def ask_devices(device_ids: list[str], command: str, payload: Any, timeout: float) -> list[Answer]:
    """Send `command` to every device at once; each one's answer or timeout, in order."""
    return async_to_sync(_ask_all)(device_ids, command, payload, timeout)


class _CommandDisplay:
    @admin.display(description="payload")
    def payload_text(self, command: DeviceCommand) -> str:
        return shown(command.payload)

    @admin.display(description="answer")
    def response_text(self, command: DeviceCommand) -> str:
        return shown(command.response)


def history_table(device: Device, limit: int = 20) -> str:
    """The device's last commands, newest first, as an HTML table for its admin page."""
    if device._state.adding:  # the add page
        return "No commands yet."
    commands = DeviceCommand.objects.filter(device=device).order_by("-sent_at")[:limit]
    rows = format_html_join(
        "",
        "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td><code>{}</code></td></tr>",
        (
            (
                timezone.localtime(c.sent_at).strftime("%Y-%m-%d %H:%M:%S"),
                c.command,
                shown(c.payload),
                c.get_status_display(),
                shown(c.response),
            )
            for c in commands
        ),
    )
    if not rows:
        return "No commands yet."
    return format_html(
        '<table class="command-history"><thead><tr><th>sent</th><th>command</th>'
        "<th>payload</th><th>status</th><th>answer</th></tr></thead><tbody>{}</tbody></table>",
        rows,
    )


@admin.register(DeviceCommand)
class DeviceCommandAdmin(_CommandDisplay, _CommandModelAdmin):
    """Every command sent with `gateway.mqtt.request`, and what became of it."""

    list_display = ["sent_at", "device", "command", "status", "answered_at", "response_text"]
    list_filter = ["status"]
    search_fields = ["device__device_id", "command", "request_id"]
    readonly_fields = [
        "request_id",
        "device",
        "command",
        "topic",
        "payload_text",
        "status",
        "timeout",
        "sent_at",
        "answered_at",
        "response_text",
    ]
    exclude = ["payload", "response"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
