"""The gateway app's admin, one module per feature; each is imported here."""

from __future__ import annotations

from django_app.admin import commands as commands
from django_app.admin import deadletters as deadletters
from django_app.admin import devices as devices
from django_app.admin import email as email
from django_app.admin import imap as imap
from django_app.admin import sms as sms
