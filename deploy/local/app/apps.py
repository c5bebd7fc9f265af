from __future__ import annotations

from django.apps import AppConfig


class TopologyConfig(AppConfig):
    name = "deploy.local.app"
    label = "topology"
    default_auto_field = "django.db.models.BigAutoField"
