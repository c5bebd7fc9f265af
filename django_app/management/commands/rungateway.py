"""``manage.py rungateway [APP]``: the gateway process, as ``gateway run`` starts it."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from gateway.cli import UsageError, add_run_options, configure_logging, run


class Command(BaseCommand):
    """Serve HTTP, WebSocket and every enabled adapter until SIGTERM or SIGINT."""

    help = "Run the gateway: HTTP, WebSocket and every enabled protocol adapter."
    # The gateway runs the checks itself, honouring --skip-checks, before anything listens.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "app",
            nargs="?",
            metavar="APP",
            help="the root ASGI app as module.path:attribute (default: settings.ASGI_APPLICATION)",
        )
        add_run_options(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        app_path = options["app"] or getattr(settings, "ASGI_APPLICATION", None)
        if not app_path:
            raise CommandError("give APP or set ASGI_APPLICATION in the settings", returncode=2)
        if not logging.getLogger().handlers:
            configure_logging("debug" if options["verbosity"] > 1 else "info")
        try:
            code = run(
                _as_app_path(app_path),
                host=options["host"],
                port=options["port"],
                skip_checks=options["skip_checks"],
            )
        except UsageError as exc:
            raise CommandError(str(exc), returncode=2) from exc
        if code:
            raise SystemExit(code)


def _as_app_path(value: str) -> str:
    # ASGI_APPLICATION is "module.attribute" in Django and Channels; APP is "module:attribute".
    if ":" in value:
        return value
    module, _, attribute = value.rpartition(".")
    return f"{module}:{attribute}"
