"""Run Django Channels' own test suite against this project, through a module alias.

    .venv/bin/python scripts/channels_suite.py PATH/TO/channels/tests [PYTEST ARGS...]

Every ``channels.*`` module name that Channels' tests import is mapped to the module of
ours that holds the same names (a name-only alias: no Channels code runs). The tests run
with Channels' own conftest and settings; the last line says how many passed and failed.

Channels' settings list ``daphne`` in INSTALLED_APPS; when daphne is not installed it is
left out (it only adds its ``runserver``), and the tests that need daphne's live server
or selenium fail to import and are counted as errors.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import pytest

#: Channels' module name → the module of ours that holds the same public names.
ALIASES: dict[str, str] = {
    "channels": "gateway",
    "channels.apps": "gateway",
    "channels.routing": "routers",
    "channels.consumer": "gateway.consumers",
    "channels.generic": "gateway.consumers",
    "channels.generic.websocket": "gateway.consumers",
    "channels.generic.http": "gateway.consumers",
    "channels.layers": "gateway.layers",
    "channels.auth": "gateway.middleware",
    "channels.sessions": "gateway.middleware",
    "channels.middleware": "gateway.middleware",
    "channels.security": "gateway.middleware",
    "channels.security.websocket": "gateway.middleware",
    "channels.db": "gateway.db",
    "channels.exceptions": "gateway.exceptions",
    "channels.testing": "gateway.testing",
    "channels.worker": "gateway.worker",
}


class _AliasLoader(importlib.abc.Loader):
    """Puts our module in sys.modules under Channels' name; the import returns it."""

    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        # The import system returns whatever sys.modules holds under the name once
        # exec_module is done, so our module is used as is, its __spec__ untouched.
        sys.modules[module.__name__] = importlib.import_module(self.target)


class _AliasFinder(importlib.abc.MetaPathFinder):
    """Finds each name of ALIASES before any installed ``channels`` package is seen."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname == "channels" or fullname.startswith("channels."):
            alias = ALIASES.get(fullname)
            if alias is None:
                raise ModuleNotFoundError(f"no alias for {fullname}", name=fullname)
            return importlib.machinery.ModuleSpec(fullname, _AliasLoader(alias))
        return None


def install_aliases() -> None:
    """Map the ``channels`` names to ours for every later import in this process."""
    for name in [name for name in sys.modules if name.split(".")[0] == "channels"]:
        del sys.modules[name]
    sys.meta_path.insert(0, _AliasFinder())
    if importlib.util.find_spec("async_timeout") is None:
        # A test dependency of Channels: its timeout() is the standard library's.
        shim = ModuleType("async_timeout")
        shim.timeout = asyncio.timeout  # type: ignore[attr-defined]
        sys.modules["async_timeout"] = shim


class _Tally:
    """A pytest plugin that counts outcomes and leaves daphne out when it is missing."""

    def __init__(self) -> None:
        self.outcomes: dict[str, int] = {"passed": 0, "failed": 0, "skipped": 0, "error": 0}

    @pytest.hookimpl(trylast=True)
    def pytest_configure(self, config: pytest.Config) -> None:
        from django.conf import settings

        if importlib.util.find_spec("daphne") is None and settings.configured:
            settings.INSTALLED_APPS = [app for app in settings.INSTALLED_APPS if app != "daphne"]

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call":
            self.outcomes[report.outcome] += 1
        elif report.when == "setup" and report.outcome != "passed":
            self.outcomes["error" if report.failed else "skipped"] += 1

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.outcomes["error"] += 1


def main(argv: Sequence[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    tests = Path(argv[0]).resolve()
    root = tests.parent
    install_aliases()
    os.chdir(root)
    sys.path.insert(0, str(root))
    tally = _Tally()
    config = root / "setup.cfg"
    args = [
        "-p",
        "no:cacheprovider",
        "-q",
        "--continue-on-collection-errors",
        "-o",
        "asyncio_default_fixture_loop_scope=function",
        f"--rootdir={root}",
        str(tests),
        *argv[1:],
    ]
    if config.exists():
        args[:0] = ["-c", str(config)]
    code = pytest.main(args, plugins=[tally])
    counts = tally.outcomes
    print(
        f"channels suite: {counts['passed']} passed, {counts['failed']} failed,"
        f" {counts['error']} errors, {counts['skipped']} skipped"
    )
    return int(code)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
