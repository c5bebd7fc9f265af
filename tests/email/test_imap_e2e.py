"""`gateway run` with the IMAP adapter against a test Dovecot: listener line, intake, health."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.email.imap_support import message
from tests.integration.dovecot import Dovecot, running_dovecot
from tests.server.process import ROOT, gateway_env, spawn, wait_ready

pytestmark = [pytest.mark.integration, pytest.mark.e2e]
APP = "tests.email.imap_e2e_app:application"
SETTINGS = "tests.email.imap_e2e_settings"


@pytest.fixture
def dovecot(tmp_path: Path) -> Iterator[Dovecot]:
    with running_dovecot(tmp_path) as server:
        yield server


def _env(tmp_path: Path, dovecot: Dovecot) -> dict[str, str]:
    env = gateway_env(tmp_path, SETTINGS)
    env.update(
        GATEWAY_IMAP_E2E_DB=str(tmp_path / "db.sqlite3"),
        GATEWAY_IMAP_E2E_PORT=str(dovecot.port),
        GATEWAY_IMAP_E2E_PASSWORD=dovecot.password,
        GATEWAY_IMAP_E2E_MARKER=str(tmp_path / "handled.txt"),
    )
    return env


def _wait_for(check: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + 30.0  # generous: only there to turn a hang into a failure
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_gateway_run_reads_the_mailbox(tmp_path: Path, dovecot: Dovecot) -> None:
    env = _env(tmp_path, dovecot)
    # No migrations package yet: create the tables of unmigrated apps directly.
    migrate = [sys.executable, "-m", "django", "migrate", "--run-syncdb", "-v", "0"]
    subprocess.run(migrate, cwd=ROOT, env=env, check=True, timeout=120)
    process = spawn(
        tmp_path, env=env, command=[sys.executable, "-m", "gateway", "run", APP, "--port", "0"]
    )
    try:
        assert wait_ready(process), process.stderr()
        assert process.listeners["imap"] == (
            f"imap://inbox@example.com@127.0.0.1:{dovecot.port}/INBOX"
        )
        dovecot.append(message("over the wire"))
        marker = tmp_path / "handled.txt"
        _wait_for(marker.exists, "the message to be handled")
        assert marker.read_text() == "imap inbox@example.com over the wire\n"
        _wait_for(lambda: dovecot.flags() == {1: {"\\Seen"}}, "the message to be seen")
        with urllib.request.urlopen(f"{process.http_url}/-/health", timeout=10) as response:
            report = json.load(response)
        assert report["adapters"]["imap"]["status"] == "ok"
        assert report["adapters"]["imap"]["protocol"] == "email"
        # SIGTERM while the adapter waits in IDLE: it logs out and the process exits cleanly.
        process.proc.terminate()
        assert process.proc.wait(30) == 0, process.stderr()
    finally:
        process.kill()
