"""The gateway app's models, one module per feature; each is imported here."""

from __future__ import annotations

from django_app.models.commands import DeviceCommand as DeviceCommand
from django_app.models.deadletters import DeadLetter as DeadLetter
from django_app.models.devices import Device as Device
from django_app.models.devices import DeviceCredential as DeviceCredential
from django_app.models.email import InboundEmail as InboundEmail
from django_app.models.imap import ImapCheckpoint as ImapCheckpoint
from django_app.models.sms import SmsMessage as SmsMessage
from django_app.models.sms import SmsOptOut as SmsOptOut
