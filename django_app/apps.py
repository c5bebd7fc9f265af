"""The AppConfig of the gateway's Django app."""

from __future__ import annotations

from django.apps import AppConfig


class GatewayConfig(AppConfig):
    """Installs as "django_app"; its label is "gateway"."""

    name = "django_app"
    label = "gateway"
    verbose_name = "Gateway"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Register the system checks; push device changes to broker-access adapters."""
        from django_app import broker_access, checks

        checks.register()
        broker_access.connect_signals()
