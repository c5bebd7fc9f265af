"""Creates the demo's admin user (admin / admin) once, so the admin and the dashboard log in."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the demo superuser 'admin' (password 'admin') if it does not exist."

    def handle(self, *args: Any, **options: Any) -> None:
        # The demo keeps Django's own User model.
        if not User.objects.filter(username="admin").exists():
            User.objects.create_superuser("admin", "admin@example.com", "admin")
            self.stdout.write("demo: created superuser admin / admin")
