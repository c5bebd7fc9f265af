"""`python -m django rungateway`: the same process as `gateway run`."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import httpx
import pytest

from tests.server.process import gateway_env, spawn, wait_ready

pytestmark = pytest.mark.e2e

WAIT = 30.0
MANAGE = [sys.executable, "-m", "django", "rungateway"]


def test_rungateway_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    process = spawn(tmp_path, "tests.server.e2e_app:application", "--port", "0", command=MANAGE)
    try:
        assert wait_ready(process), process.stderr()
        assert httpx.get(process.http_url + "/hello/", timeout=WAIT).text == "hello"
        assert "line" in process.listeners
        process.proc.send_signal(signal.SIGTERM)
        assert process.proc.wait(WAIT) == 0, process.stderr()
    finally:
        process.kill()
    assert (tmp_path / "lifespan").read_text() == "startup\nshutdown\n"


def test_rungateway_uses_asgi_application(tmp_path: Path) -> None:
    env = gateway_env(tmp_path, settings="tests.django_app.asgi_settings")
    process = spawn(tmp_path, "--port", "0", env=env, command=MANAGE)
    try:
        assert wait_ready(process), process.stderr()
        process.proc.send_signal(signal.SIGINT)
        assert process.proc.wait(WAIT) == 0, process.stderr()
    finally:
        process.kill()
    assert "http" in process.listeners


def test_rungateway_without_app_or_asgi_application(tmp_path: Path) -> None:
    process = spawn(tmp_path, env=gateway_env(tmp_path, "tests.settings"), command=MANAGE)
    try:
        assert process.proc.wait(WAIT) == 2
    finally:
        process.kill()
    assert "give APP or set ASGI_APPLICATION in the settings" in process.stderr()


def test_rungateway_refuses_bad_settings(tmp_path: Path) -> None:
    env = gateway_env(tmp_path, "tests.server.bad_settings")
    process = spawn(tmp_path, "tests.server.e2e_app:application", env=env, command=MANAGE)
    try:
        assert not wait_ready(process)
        assert process.proc.wait(WAIT) == 1
    finally:
        process.kill()
    assert """GATEWAY["HTTP"]["PORT"] must be an integer 0-65535, got 'abc'""" in process.stderr()
    assert process.stdout_lines == []
