"""Minimal Django settings shared by the benchmarks (ours and the peers use the same)."""

from __future__ import annotations

SECRET_KEY = "benchmarks-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "django_app"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
ROOT_URLCONF = "benchmarks.settings"
urlpatterns: list[object] = []
USE_TZ = True
TIME_ZONE = "UTC"
LOGGING_CONFIG = None
# Both stacks get the stock in-memory layer of their own project, as their docs set it up.
CHANNEL_LAYERS = {"default": {"BACKEND": "gateway.layers.InMemoryChannelLayer"}}
GATEWAY = {"HTTP": {"PORT": 0}}
