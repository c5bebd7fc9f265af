"""`gateway run` with the SMTP adapter as a subprocess: listener line, 451 then 250, once."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.email.support import message, send, wire
from tests.server.process import ROOT, gateway_env, spawn, wait_ready

pytestmark = pytest.mark.e2e


def test_gateway_run_smtp_fails_once_then_handles_once(tmp_path: Path) -> None:
    env = gateway_env(tmp_path, settings="tests.email.e2e_settings")
    env.update(
        GATEWAY_EMAIL_DB=str(tmp_path / "db.sqlite3"),
        GATEWAY_EMAIL_LOG=str(tmp_path / "handled.log"),
        GATEWAY_EMAIL_FAIL_MARKER=str(tmp_path / "fail-once"),
        GATEWAY_EMAIL_OUTBOX=str(tmp_path / "outbox"),
    )
    subprocess.run(
        [sys.executable, "-m", "django", "migrate", "--run-syncdb", "-v", "0"],
        cwd=ROOT, env=env, check=True, timeout=120,
    )  # fmt: skip
    (tmp_path / "fail-once").touch()
    process = spawn(
        tmp_path, env=env,
        command=[sys.executable, "-m", "gateway", "run", "tests.email.e2e_app:application"],
    )  # fmt: skip
    try:
        assert wait_ready(process), process.stderr()
        port = int(process.listeners["smtp"].rsplit(":", 1)[1])
        raw = wire(message(subject="Printer on fire"))
        with pytest.raises(Exception, match="451") as first:
            send(port, raw, ["support@example.com"])
        assert "RuntimeError" not in str(first.value)
        assert send(port, raw, ["support@example.com"]) == {}
        assert send(port, raw, ["support@example.com"]) == {}  # as if our 250 was lost
        process.proc.send_signal(signal.SIGTERM)
        assert process.proc.wait(60) == 0, process.stderr()
    finally:
        process.kill()
    handled = (tmp_path / "handled.log").read_text().splitlines()
    assert handled == ["support@example.com Printer on fire"]
    with sqlite3.connect(tmp_path / "db.sqlite3") as db:
        rows = db.execute("SELECT status, attempts, raw FROM gateway_inboundemail").fetchall()
    assert rows == [("handled", 2, raw)]
    [reply] = list((tmp_path / "outbox").iterdir())
    assert "Subject: Re: Printer on fire" in reply.read_text()
