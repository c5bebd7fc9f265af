"""Settings of the demo: every embedded default, nothing to install or configure."""

from __future__ import annotations

import os
import socket
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent


def free_or(port: int) -> int:
    """The preferred port when it is free on 127.0.0.1, else 0 (the OS picks one)."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return 0
    return port


def mqtt_port() -> int:
    """DEMO_MQTT_PORT, else 1883 when free, else a port the OS says is free now.

    A number, not 0: the simulated devices need to know where to connect.
    """
    if os.environ.get("DEMO_MQTT_PORT"):
        return int(os.environ["DEMO_MQTT_PORT"])
    if free_or(1883):
        return 1883
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


SECRET_KEY = os.environ.get("DEMO_SECRET_KEY", "demo-only-not-secret")
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_app",
    "dashboard",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "demo.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
ASGI_APPLICATION = "demo.asgi.application"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DEMO_DB", str(BASE_DIR / "demo.sqlite3")),
        # One connection kept per thread: opening SQLite anew for each database call took a
        # third of the database thread's time under the soak's load.
        "CONN_MAX_AGE": None,
        # The gateway's database thread and the sync consumers write at the same time:
        # IMMEDIATE makes a transaction wait for the write lock instead of failing with
        # "database is locked"; WAL lets readers go on while one writes (gateway.W001).
        "OPTIONS": {
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL",
        },
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
STATIC_URL = "static/"
USE_TZ = True
TIME_ZONE = "UTC"

CHANNEL_LAYERS = {"default": {"BACKEND": "gateway.layers.InMemoryChannelLayer"}}

MQTT_PORT = mqtt_port()
# The simulated devices' password; real devices get theirs in the admin (Devices > credential).
DEVICE_PASSWORD = os.environ.get("DEMO_DEVICE_PASSWORD", "demo-device-password")

SMTP_PORT = int(os.environ.get("DEMO_SMTP_PORT", free_or(2525)))
# Twilio signs its webhooks with the account's auth token; the demo's is made up.
TWILIO_AUTH_TOKEN = os.environ.get("DEMO_TWILIO_AUTH_TOKEN", "demo-twilio-auth-token")
# Vonage signs its webhooks with the account's signature secret; the demo's is made up.
VONAGE_API_KEY = os.environ.get("DEMO_VONAGE_API_KEY", "demo-vonage-key")
VONAGE_SIGNATURE_SECRET = os.environ.get(
    "DEMO_VONAGE_SIGNATURE_SECRET", "demo-vonage-signature-secret"
)
# Postmark posts inbound mail to a URL with this user:password in it (HTTP basic auth).
POSTMARK_WEBHOOK_SECRET = os.environ.get(
    "DEMO_POSTMARK_WEBHOOK_SECRET", "postmark:demo-webhook-password"
)
# Receipts for support mail are written as files instead of being sent.
EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
EMAIL_FILE_PATH = os.environ.get("DEMO_SENT_MAIL", str(BASE_DIR / "sent-mail"))
DEFAULT_FROM_EMAIL = "support@demo.example"

GATEWAY = {
    "HTTP": {"HOST": "127.0.0.1", "PORT": int(os.environ.get("DEMO_HTTP_PORT", free_or(8000)))},
    "ADAPTERS": {
        # Devices log in with their Device credential and may only use devices/<id>/...
        # COMMANDS: the admin's "Send a command" waits for the device's answer.
        "devices": {
            "BACKEND": "protocol_adapters.mqtt.EmbeddedBroker",
            "OPTIONS": {
                "HOST": "127.0.0.1",
                "PORT": MQTT_PORT,
                "AUTH": "devices",
                "COMMANDS": True,
            },
        },
        # Mail to support@demo.example opens a ticket; other recipients are refused at RCPT.
        "mail": {
            "BACKEND": "protocol_adapters.smtp.SMTPAdapter",
            "OPTIONS": {"HOST": "127.0.0.1", "PORT": SMTP_PORT, "HOSTNAME": "mail.demo.example"},
        },
        # Twilio's webhook, served by the gateway itself at POST /sms/twilio/.
        "sms": {
            "BACKEND": "protocol_adapters.twilio_sms.TwilioSmsAdapter",
            "OPTIONS": {"AUTH_TOKEN": TWILIO_AUTH_TOKEN},
        },
        # Vonage's signed inbound-SMS webhook, at GET or POST /sms/vonage/. Its replies go out
        # through Vonage's SMS API, which needs API_SECRET: without one they are logged only.
        "vonage": {
            "BACKEND": "protocol_adapters.vonage_sms.VonageSmsAdapter",
            "OPTIONS": {
                "API_KEY": VONAGE_API_KEY,
                "API_SECRET": os.environ.get("DEMO_VONAGE_API_SECRET"),
                "SIGNATURE_SECRET": VONAGE_SIGNATURE_SECRET,
            },
        },
        # Postmark's inbound webhook, served by the gateway itself at POST /email/postmark/:
        # the same support address, the same consumer as mail over SMTP.
        "postmark": {
            "BACKEND": "protocol_adapters.email_webhooks.EmailWebhookAdapter",
            "OPTIONS": {"PROVIDER": "postmark", "WEBHOOK_SECRET": POSTMARK_WEBHOOK_SECRET},
        },
        # Started after the broker: real MQTT clients, one per simulated device.
        "simulator": {
            "BACKEND": "dashboard.simulator.DeviceSimulator",
            "OPTIONS": {
                "DEVICES": 3,
                "INTERVAL": float(os.environ.get("DEMO_INTERVAL", "1.0")),
                "BROKER": f"mqtt://127.0.0.1:{MQTT_PORT}",
                "PASSWORD": DEVICE_PASSWORD,
            },
        },
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "gateway": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "gmqtt": {"handlers": ["console"], "level": "WARNING", "propagate": False},
    },
}
