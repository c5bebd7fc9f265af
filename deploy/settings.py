"""Django settings for a deployed gateway, read from the environment.

One module for every way of running the topology: the local processes of `deploy/local`, the
compose file, the Kubernetes manifests and the systemd unit all set `DJANGO_SETTINGS_MODULE`
to `deploy.settings` and differ only in the environment. Each process of one deployment gets
the same variables; what must differ per process (the MQTT client id, an SMTP port on a shared
host) is given on its command line (`gateway run ... --set mqtt.CLIENT_ID=gw-1`) or as
`GATEWAY_ADAPTERS__MQTT__CLIENT_ID`, see docs/mqtt.md.

| variable | default | meaning |
|---|---|---|
| `DJANGO_SECRET_KEY` | required | Django's secret key |
| `DJANGO_APPS` | `""` | your project's apps, comma-separated, added to the installed apps |
| `DJANGO_ROOT_URLCONF` | required | your project's URLconf module |
| `DJANGO_ALLOWED_HOSTS` | `"localhost,127.0.0.1"` | comma-separated |
| `DJANGO_DEBUG` | `"0"` | `"1"` for Django's debug mode (never in production) |
| `DATABASE_URL` | required | `postgres://user:password@host:port/name` |
| `REDIS_URL` | required | the channel layer, `redis://host:port/db`; comma-separated for shards |
| `REDIS_PREFIX` | `"gateway"` | the channel layer's key prefix |
| `MQTT_URL` | unset: no MQTT | the external broker, `mqtt://user:password@host:port` |
| `MQTT_CLIENT_ID` | `POD_NAME`, else the default | this process's MQTT client id (stable) |
| `MQTT_SHARED_GROUP` | `"gateway"` | the `$share` group all gateway processes subscribe in |
| `MQTT_FAILOVER_EXPIRY` | `"5"` | seconds of silence after which a process's session is adopted |
| `DYNSEC_ADMIN_USER`, `_PASSWORD` | unset: no dynsec | Mosquitto's dynamic-security admin |
| `SMTP_PORT` | unset: no SMTP | the SMTP listener's port |
| `SMTP_HOSTNAME` | `"localhost"` | the name the SMTP server greets with |
| `TWILIO_AUTH_TOKEN` | unset: no Twilio webhook | checks the webhook's signatures |
| `SMS_PUBLIC_URL` | unset | the base URL Twilio calls, e.g. `https://sms.example.com` |
| `FORWARDED_ALLOW_IPS` | `"127.0.0.1"` | the proxies whose `X-Forwarded-*` headers are trusted |
| `SECURE_HSTS_SECONDS` | `"0"` | Django's HSTS header, if the proxy does not send one |
| `SHUTDOWN_TIMEOUT` | `"10"` | seconds a stopping process drains |
| `GATEWAY_LOG_FORMAT` | `text` | `json`: one JSON object a line (read by the `gateway` command) |
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import unquote, urlsplit

env = os.environ


def _list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in env.get(name, default).split(",") if item.strip()]


def _database(url: str) -> dict[str, Any]:
    """DATABASES["default"] from a postgres:// URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql"):
        raise ValueError(f"DATABASE_URL: a postgres:// URL, not {parts.scheme!r}")
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": parts.path.lstrip("/"),
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": parts.port or 5432,
        "CONN_MAX_AGE": 60,
        "CONN_HEALTH_CHECKS": True,
    }


SECRET_KEY = env["DJANGO_SECRET_KEY"]
DEBUG = env.get("DJANGO_DEBUG") == "1"
ALLOWED_HOSTS = _list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1")
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_app",
    *_list("DJANGO_APPS"),
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
ROOT_URLCONF = env["DJANGO_ROOT_URLCONF"]
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
DATABASES = {"default": _database(env["DATABASE_URL"])}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
STATIC_URL = "static/"
USE_TZ = True
TIME_ZONE = "UTC"
# Behind the TLS-terminating proxy: it says whether the request came over HTTPS.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = True  # cookies over HTTPS only
# HTTPS redirects and HSTS are the proxy's (plain-HTTP health probes reach the processes).
SECURE_HSTS_SECONDS = int(env.get("SECURE_HSTS_SECONDS", "0"))

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "gateway.layers.redis.RedisChannelLayer",
        "CONFIG": {
            "hosts": _list("REDIS_URL"),
            "prefix": env.get("REDIS_PREFIX", "gateway"),
            "durable": ["jobs.*"],
        },
    },
}

ADAPTERS: dict[str, dict[str, Any]] = {}
if "MQTT_URL" in env:
    client_id = env.get("MQTT_CLIENT_ID") or env.get("POD_NAME")
    ADAPTERS["mqtt"] = {
        "BACKEND": "protocol_adapters.mqtt.ExternalBroker",
        "OPTIONS": {
            "URL": env["MQTT_URL"],
            **({"CLIENT_ID": client_id} if client_id else {}),
            "SHARED_GROUP": env.get("MQTT_SHARED_GROUP", "gateway"),
            "CLEAN_START": False,
            "SESSION_EXPIRY": 3600,
            "FAILOVER": {"EXPIRY": float(env.get("MQTT_FAILOVER_EXPIRY", "5"))},
        },
    }
if "DYNSEC_ADMIN_PASSWORD" in env:
    ADAPTERS["broker-access"] = {
        "BACKEND": "protocol_adapters.mqtt.MosquittoDynsec",
        "OPTIONS": {
            "URL": env.get("DYNSEC_URL", env.get("MQTT_URL", "mqtt://127.0.0.1:1883")),
            "USERNAME": env.get("DYNSEC_ADMIN_USER", "gateway-admin"),
            "PASSWORD": env["DYNSEC_ADMIN_PASSWORD"],
        },
    }
if "SMTP_PORT" in env:
    ADAPTERS["mail"] = {
        "BACKEND": "protocol_adapters.smtp.SMTPAdapter",
        "OPTIONS": {
            "HOST": env.get("SMTP_HOST", "0.0.0.0"),
            "PORT": int(env["SMTP_PORT"]),
            "HOSTNAME": env.get("SMTP_HOSTNAME", "localhost"),
        },
    }
if "TWILIO_AUTH_TOKEN" in env:
    ADAPTERS["sms"] = {
        "BACKEND": "protocol_adapters.twilio_sms.TwilioSmsAdapter",
        "OPTIONS": {
            "AUTH_TOKEN": env["TWILIO_AUTH_TOKEN"],
            "ACCOUNT_SID": env.get("TWILIO_ACCOUNT_SID"),
            "PUBLIC_URL": env.get("SMS_PUBLIC_URL"),
        },
    }

GATEWAY: dict[str, Any] = {
    "HTTP": {
        "PROXY_HEADERS": True,
        "FORWARDED_ALLOW_IPS": env.get("FORWARDED_ALLOW_IPS", "127.0.0.1"),
    },
    "SHUTDOWN_TIMEOUT": float(env.get("SHUTDOWN_TIMEOUT", "10")),
    "ADAPTERS": ADAPTERS,
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "gateway": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "gmqtt": {"handlers": ["console"], "level": "WARNING", "propagate": False},
    },
}
