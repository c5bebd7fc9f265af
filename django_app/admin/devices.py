"""The devices admin: presence and state at a glance, credentials, and commands to devices."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from django_app import broker_access, devices
from django_app.admin.commands import ask_devices, history_table
from django_app.models.devices import Device, DeviceCredential
from gateway import mqtt

__all__ = ["CommandForm", "DeviceAdmin", "DeviceCredentialForm"]

if TYPE_CHECKING:
    _CredentialForm = forms.ModelForm[DeviceCredential]
    _CredentialInline = admin.StackedInline[DeviceCredential, Device]
    _DeviceModelAdmin = admin.ModelAdmin[Device]
else:  # none of these classes is subscriptable at run time
    _CredentialForm = forms.ModelForm
    _CredentialInline = admin.StackedInline
    _DeviceModelAdmin = admin.ModelAdmin


class DeviceCredentialForm(_CredentialForm):
    """Sets a new password (never shows the hash) and the optional topic override."""

    new_password = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Leave empty to keep the current password.",
    )

    class Meta:
        model = DeviceCredential
        fields = ["topics"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self.instance._state.adding and not cleaned.get("new_password") and self.has_changed():
            self.add_error("new_password", "A new credential needs a password.")
        return cleaned

    def save(self, commit: bool = True) -> DeviceCredential:
        password = self.cleaned_data.get("new_password")
        if password:
            # The plaintext goes to the broker's access control too (Mosquitto's dynsec).
            broker_access.set_password(self.instance, password)
        return super().save(commit)


class DeviceCredentialInline(_CredentialInline):
    model = DeviceCredential
    form = DeviceCredentialForm
    can_delete = True
    extra = 0
    max_num = 1
    readonly_fields = ["created", "rotated"]


class CommandForm(forms.Form):
    """The intermediate page of the "send a command" action."""

    topic_suffix = forms.CharField(
        initial="commands", help_text="Published to devices/<device id>/<this>."
    )
    payload = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4}), initial="{}", help_text="A JSON document."
    )

    wait = forms.BooleanField(
        required=False,
        label="Wait for the answers",
        help_text=(
            "Send it as a request (gateway.mqtt.request: the MQTT adapter's COMMANDS) to "
            "devices/<device id>/commands/<command>, and show each device's answer or timeout."
        ),
    )
    command = forms.CharField(required=False, initial="run", help_text="With the wait: its name.")
    timeout = forms.FloatField(
        initial=5.0, min_value=0.1, max_value=120.0, required=False, help_text="Seconds."
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("wait"):
            command = str(cleaned.get("command") or "").strip("/")
            try:
                mqtt.validate_topic_name(f"devices/x/commands/{command}")
            except mqtt.MqttPublishError as exc:
                self.add_error("command", str(exc))
            cleaned["command"] = command
            cleaned["timeout"] = cleaned.get("timeout") or 5.0
        return cleaned

    def clean_topic_suffix(self) -> str:
        suffix = str(self.cleaned_data["topic_suffix"]).strip("/")
        try:
            mqtt.validate_topic_name(f"devices/x/{suffix}")
        except mqtt.MqttPublishError as exc:
            raise forms.ValidationError(str(exc)) from None
        return suffix

    def clean_payload(self) -> Any:
        try:
            return json.loads(self.cleaned_data["payload"])
        except ValueError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc}") from None


@admin.register(Device)
class DeviceAdmin(_DeviceModelAdmin):
    list_display = ["device_id", "name", "online", "last_seen", "state_summary"]
    list_filter = ["online"]
    search_fields = ["device_id", "name"]
    # The state is what the device reports: saving the page must not write an old copy back
    # over readings recorded meanwhile.
    readonly_fields = [
        "online",
        "last_seen",
        "state",
        "created",
        "last_readings",
        "command_history",
    ]
    inlines = [DeviceCredentialInline]
    actions = ["send_command"]

    @admin.display(description="state")
    def state_summary(self, device: Device) -> str:
        latest = device.state
        if isinstance(latest, dict):  # the readings kept have their own section
            latest = {k: v for k, v in latest.items() if k != devices.READINGS_KEY}
        text = json.dumps(latest, sort_keys=True)
        return text if len(text) <= 80 else text[:77] + "..."

    @admin.display(description="Last readings")
    def last_readings(self, device: Device) -> str:
        """The readings `devices.record_reading` kept, newest first."""
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td><code>{}</code></td></tr>",
            (
                (_when(entry["received"]), json.dumps(entry["reading"], sort_keys=True))
                for entry in reversed(devices.last_readings(device))
            ),
        )
        if not rows:
            return "No readings yet."
        return format_html(
            '<table class="last-readings"><thead><tr><th>received</th><th>reading</th>'
            "</tr></thead><tbody>{}</tbody></table>",
            rows,
        )

    @admin.display(description="Command history")
    def command_history(self, device: Device) -> str:
        """The device's last commands (gateway.mqtt.request) and their answers, newest first."""
        return history_table(device)

    @admin.action(description="Send a command to the selected devices")
    def send_command(self, request: HttpRequest, queryset: QuerySet[Device]) -> HttpResponse | None:
        form = CommandForm(request.POST if "apply" in request.POST else None)
        if "apply" in request.POST and form.is_valid():
            data = form.cleaned_data
            if data["wait"]:
                ids = list(queryset.values_list("device_id", flat=True))
                answers = ask_devices(ids, data["command"], data["payload"], data["timeout"])
                context = {**self._context(request, form, queryset), "answers": answers}
                return TemplateResponse(request, "gateway/devices/command_answers.html", context)
            self._publish(request, queryset, data)
            return None  # back to the change list, with the message
        context = self._context(request, form, queryset)
        return TemplateResponse(request, "gateway/devices/send_command.html", context)

    def _context(
        self, request: HttpRequest, form: CommandForm, queryset: QuerySet[Device]
    ) -> dict[str, Any]:
        return {
            **self.admin_site.each_context(request),
            "title": "Send a command",
            "form": form,
            "devices": queryset,
            "opts": self.model._meta,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }

    def _publish(self, request: HttpRequest, queryset: QuerySet[Device], data: Any) -> None:
        sent = 0
        for device_id in queryset.values_list("device_id", flat=True):
            topic = f"devices/{device_id}/{data['topic_suffix']}"
            try:
                mqtt.publish(topic, data["payload"], qos=1)
            except Exception as exc:  # a missing channel layer, a bad topic: tell the operator
                self.message_user(request, f"{topic}: {exc}", messages.ERROR)
                continue
            sent += 1
        self.message_user(request, f"Command sent to {sent} device(s).", messages.SUCCESS)


def _when(received: Any) -> str:
    """A reading's ISO 8601 receipt time in the admin's time zone, to the second."""
    try:
        moment = datetime.fromisoformat(str(received))
    except ValueError:
        return str(received)
    if timezone.is_aware(moment):
        moment = timezone.localtime(moment)
    return moment.strftime("%Y-%m-%d %H:%M:%S")
