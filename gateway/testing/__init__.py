"""Test helpers: drive an ASGI application in-process, as Channels' communicators do.

Importing this package needs neither a server nor Django settings. The communicators
run the application with database connection closing turned off, as Django's test
client does, so a test's database connection and transaction stay usable.
"""

from __future__ import annotations

from gateway.testing.application import ApplicationCommunicator
from gateway.testing.email import EmailCommunicator, EmailOutcome
from gateway.testing.http import HttpCommunicator
from gateway.testing.mqtt import MqttCommunicator
from gateway.testing.sms import SmsCommunicator, SmsResult
from gateway.testing.websocket import WebsocketCommunicator

__all__ = [
    "ApplicationCommunicator",
    "EmailCommunicator",
    "EmailOutcome",
    "HttpCommunicator",
    "MqttCommunicator",
    "SmsCommunicator",
    "SmsResult",
    "WebsocketCommunicator",
]
