"""The ``gateway`` console script run from a project's directory, as uvicorn and daphne are.

The project is not on ``sys.path`` and ``DJANGO_SETTINGS_MODULE`` is not set: its asgi.py
sets it, as Django's template does.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.server.process import gateway_env, spawn, wait_ready

pytestmark = pytest.mark.e2e

WAIT = 30.0
GATEWAY = str(Path(sys.executable).parent / "gateway")

SETTINGS = """\
SECRET_KEY = "test"
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1"]
ROOT_URLCONF = "pkg.urls"
INSTALLED_APPS = ["django_app"]
DATABASES = {{"default": {{"ENGINE": "django.db.backends.sqlite3", "NAME": "{db}"}}}}
USE_TZ = True
"""

URLS = """\
from django.http import HttpResponse
from django.urls import path

urlpatterns = [path("hello/", lambda request: HttpResponse("hello from pkg"))]
"""

ASGI = """\
import os
from django.core.asgi import get_asgi_application
{settings_line}
application = get_asgi_application()
"""
SETS_SETTINGS = 'os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pkg.settings")'


def make_project(root: Path, *, asgi_sets_settings: bool = True) -> Path:
    """A project directory holding package `pkg` (settings, urls, asgi), as startproject makes."""
    project = root / "project"
    package = project / "pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "settings.py").write_text(SETTINGS.format(db=project / "db.sqlite3"))
    (package / "urls.py").write_text(URLS)
    line = SETS_SETTINGS if asgi_sets_settings else ""
    (package / "asgi.py").write_text(ASGI.format(settings_line=line))
    return project


def project_env(tmp_path: Path) -> dict[str, str]:
    env = gateway_env(tmp_path)
    for name in ("DJANGO_SETTINGS_MODULE", "PYTHONPATH"):
        env.pop(name, None)
    return env


def test_gateway_run_from_the_project_directory(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    command = [GATEWAY, "run", "pkg.asgi:application", "--port", "0"]
    process = spawn(tmp_path, env=project_env(tmp_path), command=command, cwd=project)
    try:
        assert wait_ready(process), process.stderr()
        response = httpx.get(process.http_url + "/hello/", timeout=WAIT)
        assert response.text == "hello from pkg"
        process.proc.send_signal(signal.SIGTERM)
        assert process.proc.wait(WAIT) == 0, process.stderr()
    finally:
        process.kill()


def test_gateway_routes_from_the_project_directory(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    result = subprocess.run(
        [GATEWAY, "routes", "pkg.asgi:application"],
        cwd=project,
        env=project_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert result.returncode == 0, result.stderr
    assert "django.core.handlers.asgi.ASGIHandler" in result.stdout


def test_no_settings_anywhere_is_a_usage_error(tmp_path: Path) -> None:
    project = make_project(tmp_path, asgi_sets_settings=False)
    result = subprocess.run(
        [GATEWAY, "run", "pkg.asgi:application", "--port", "0"],
        cwd=project,
        env=project_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert result.returncode == 2
    assert "gateway: error: importing APP 'pkg.asgi:application' needs the settings" in (
        result.stderr
    )
    assert "set DJANGO_SETTINGS_MODULE or pass --settings MODULE" in result.stderr


def test_a_missing_project_module_is_a_usage_error(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    result = subprocess.run(
        [GATEWAY, "run", "nothere.asgi:application"],
        cwd=project,
        env=project_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert result.returncode == 2
    assert "cannot import module 'nothere.asgi' of APP" in result.stderr
