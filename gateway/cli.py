"""The ``gateway`` command: ``gateway run APP`` starts the gateway process.

Exit codes: 0 after a clean stop, 1 when it could not start (or did not stop cleanly),
2 for a usage error.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any, cast

from gateway.logcontext import LOG_FORMATS, JsonFormatter, LogFormat
from gateway.overrides import set_from_command_line

__all__ = ["UsageError", "add_common_options", "load_app", "main", "run"]

logger = logging.getLogger("gateway.server")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class UsageError(Exception):
    """The command line (or the settings it points to) cannot be used as given."""


# Modules adding a subcommand: each has `register(commands)`, which adds its parser with
# `set_defaults(handler=callable(args) -> exit code, needs_django=bool)`.
COMMAND_MODULES: tuple[str, ...] = (
    "gateway.worker",
    "gateway.routes",
    "protocol_adapters.mqtt.simulate",
)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``gateway`` console script and ``python -m gateway``."""
    args = build_parser().parse_args(argv)
    if getattr(args, "settings", None):
        os.environ["DJANGO_SETTINGS_MODULE"] = args.settings
    configure_logging(getattr(args, "log_level", "info"), chosen_log_format(args) or "text")
    _put_cwd_on_path()
    try:
        if args.needs_django:
            _prepare_django(getattr(args, "app", None))
            _apply_log_format_setting(args)
        handler: Any = args.handler
        return int(handler(args))
    except UsageError as exc:
        sys.stderr.write(f"gateway: error: {exc}\n")
        return EXIT_USAGE
    except Exception:
        logger.exception("The gateway could not start.")
        return EXIT_FAILED


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of the ``gateway`` command."""
    parser = argparse.ArgumentParser(prog="gateway", description="The Django protocol gateway.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run_parser = commands.add_parser("run", help="serve HTTP, WebSocket and every enabled adapter")
    run_parser.add_argument(
        "app", metavar="APP", help="the root ASGI app, as module.path:attribute"
    )
    add_run_options(run_parser)
    add_common_options(run_parser)
    run_parser.set_defaults(handler=_run_command, needs_django=True)
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(commands)
    return parser


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """`--settings` and `--log-level`, which every subcommand takes."""
    parser.add_argument("--settings", metavar="MODULE", help="Django settings module")
    parser.add_argument(
        "--log-level", default="info", choices=LOG_LEVELS, help="logging level (default: info)"
    )
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        help="text, or json: one object a line with the event's protocol, key and trace id"
        ' (default: $GATEWAY_LOG_FORMAT, else GATEWAY["LOG_FORMAT"], else text)',
    )


def chosen_log_format(args: argparse.Namespace) -> LogFormat | None:
    """--log-format, else $GATEWAY_LOG_FORMAT when it names a format; None: neither chose."""
    chosen = getattr(args, "log_format", None) or os.environ.get("GATEWAY_LOG_FORMAT")
    return cast(LogFormat, chosen) if chosen in LOG_FORMATS else None


def _apply_log_format_setting(args: argparse.Namespace) -> None:
    """GATEWAY["LOG_FORMAT"] applies when neither --log-format nor GATEWAY_LOG_FORMAT chose."""
    if chosen_log_format(args) is not None:
        return
    from gateway.conf import gateway_settings

    if gateway_settings.raw.get("LOG_FORMAT") == "json":  # a bad value: the system check says
        configure_logging(getattr(args, "log_level", "info"), "json")


def _run_command(args: argparse.Namespace) -> int:
    return run(args.app, host=args.host, port=args.port, skip_checks=args.skip_checks)


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """The options `gateway run` and `manage.py rungateway` share."""
    parser.add_argument("--host", help='HTTP host (default: GATEWAY["HTTP"]["HOST"])')
    parser.add_argument(
        "--port", type=int, help='HTTP port, 0 for any free one (default: GATEWAY["HTTP"]["PORT"])'
    )
    parser.add_argument(
        "--skip-checks", action="store_true", help="do not run Django's system checks first"
    )
    parser.add_argument(
        "--set",
        action=_SetOption,
        metavar="ADAPTER.OPTION=VALUE",
        help="set one adapter option for this process, e.g. smtp.PORT=2526 or"
        " broker.CLIENT_ID=gw-2 (repeatable; the same as the environment variable"
        " GATEWAY_ADAPTERS__<ADAPTER>__<OPTION>; VALUE is JSON or a plain string)",
    )


class _SetOption(argparse.Action):
    """`--set ADAPTER.OPTION=VALUE`: becomes GATEWAY_ADAPTERS__... as it is parsed, so that
    `gateway run` and `manage.py rungateway` alike read it with the settings."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        try:
            set_from_command_line(str(values))
        except ValueError as exc:
            parser.error(f"--set: {exc}")


def configure_logging(level: str, log_format: LogFormat = "text") -> None:
    """Log to stderr at `level`; the settings' LOGGING may refine it afterwards."""
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT, stream=sys.stderr, force=True)
    if log_format == "json":
        for handler in logging.getLogger().handlers:
            handler.setFormatter(JsonFormatter())


def run(app_path: str, *, host: str | None, port: int | None, skip_checks: bool) -> int:
    """Import APP, run the system checks, then serve until stopped; return the exit code.

    Django must be set up already (``gateway run`` and ``manage.py rungateway`` both do).
    """
    from gateway.server import Gateway

    if port is not None and not 0 <= port <= 65535:
        raise UsageError(f"--port must be 0-65535, got {port}")
    app = load_app(app_path)
    if not skip_checks and not run_system_checks():
        return EXIT_FAILED
    return Gateway(app, host=host, port=port).run()


def load_app(app_path: str) -> Any:
    """Import ``module.path:attribute`` (the attribute may be dotted) and return it."""
    module_name, _, attribute = app_path.partition(":")
    if not module_name or not attribute:
        raise UsageError(f"APP must look like module.path:attribute, got {app_path!r}")
    try:
        target: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise UsageError(f"cannot import module {module_name!r} of APP: {exc}") from exc
        raise
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise UsageError(f"module {module_name!r} has no attribute {attribute!r}") from None
    if not callable(target):
        raise UsageError(f"APP {app_path!r} is not an ASGI application: {target!r}")
    return target


def run_system_checks() -> bool:
    """Run Django's system checks, print every message; False when any is an error."""
    from django.core import checks

    messages = [m for m in checks.run_checks() if not m.is_silenced()]
    errors = [m for m in messages if m.is_serious()]
    if messages:
        header = f"System check identified {len(messages)} issue(s), {len(errors)} error(s):\n"
        sys.stderr.write(header + "".join(f"{message}\n" for message in messages))
    if errors:
        sys.stderr.write("gateway: not starting because of the errors above.\n")
    sys.stderr.flush()
    return not errors


def _put_cwd_on_path() -> None:
    # As uvicorn and daphne do: `gateway run myproject.asgi:application` from the project's
    # directory finds `myproject`, which the console script's sys.path[0] (its bin/) would not.
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)


def _prepare_django(app_path: str | None) -> None:
    """Set Django up; without settings yet, import APP's module first, which may name them.

    A project's asgi.py calls ``os.environ.setdefault("DJANGO_SETTINGS_MODULE", ...)`` before
    anything else, so importing it is how uvicorn and daphne learn the settings too.
    """
    if not os.environ.get("DJANGO_SETTINGS_MODULE") and app_path:
        _import_app_without_settings(app_path)
    if not os.environ.get("DJANGO_SETTINGS_MODULE"):
        raise UsageError(
            "set DJANGO_SETTINGS_MODULE or pass --settings MODULE (or set it in APP's module "
            'first: os.environ.setdefault("DJANGO_SETTINGS_MODULE", ...), as asgi.py does)'
        )
    _setup_django()


def _import_app_without_settings(app_path: str) -> None:
    from django.core.exceptions import ImproperlyConfigured

    try:
        load_app(app_path)
    except ImproperlyConfigured as exc:
        raise UsageError(
            f"importing APP {app_path!r} needs the settings: set DJANGO_SETTINGS_MODULE or "
            f"pass --settings MODULE ({exc})"
        ) from exc


def _setup_django() -> None:
    import django
    from django.apps import apps

    if apps.ready:  # APP's module did it (get_asgi_application() calls django.setup())
        return

    try:
        django.setup(set_prefix=False)
    except ModuleNotFoundError as exc:
        module = os.environ.get("DJANGO_SETTINGS_MODULE", "")
        if exc.name and module.startswith(exc.name):
            raise UsageError(f"cannot import settings module {module!r}: {exc}") from exc
        raise
