"""`gateway run` with the SMTP adapter as a subprocess: 451 then 250, once; dedup on restart."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from django_app.inbound_mail_db import store_key
from protocol_adapters.email_common import raw_digest, scope_from_raw
from tests.email.support import message, send, wire
from tests.server.process import ROOT, GatewayProcess, gateway_env, spawn, wait_ready

pytestmark = pytest.mark.e2e

RECIPIENT = "support@example.com"


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


def start_gateway(tmp_path: Path, env: dict[str, str]) -> tuple[GatewayProcess, int]:
    process = spawn(
        tmp_path, env=env,
        command=[sys.executable, "-m", "gateway", "run", "tests.email.e2e_app:application"],
    )  # fmt: skip
    assert wait_ready(process), process.stderr()
    return process, int(process.listeners["smtp"].rsplit(":", 1)[1])


def stop_gateway(process: GatewayProcess) -> None:
    process.proc.send_signal(signal.SIGTERM)
    assert process.proc.wait(60) == 0, process.stderr()


def test_dedup_holds_across_a_restart_and_rows_of_other_processes(tmp_path: Path) -> None:
    env = gateway_env(tmp_path, settings="tests.email.e2e_settings")
    database = tmp_path / "db.sqlite3"
    env.update(
        GATEWAY_EMAIL_DB=str(database),
        GATEWAY_EMAIL_LOG=str(tmp_path / "handled.log"),
        GATEWAY_EMAIL_FAIL_MARKER=str(tmp_path / "no-failure"),
        GATEWAY_EMAIL_OUTBOX=str(tmp_path / "outbox"),
    )
    subprocess.run(
        [sys.executable, "-m", "django", "migrate", "--run-syncdb", "-v", "0"],
        cwd=ROOT, env=env, check=True, timeout=120,
    )  # fmt: skip
    first, second, third = (wire(message(subject=s)) for s in ("First", "Second", "Third"))
    process, port = start_gateway(tmp_path, env)
    try:
        assert send(port, first, ["support@example.com"]) == {}
        stop_gateway(process)
    finally:
        process.kill()
    # Another gateway process sharing the database handled the second message meanwhile.
    scope = scope_from_raw(second, source="smtp", adapter="mx", sender="", recipient=RECIPIENT)
    key = store_key(scope, raw_digest(second))
    with sqlite3.connect(database) as db:
        db.execute(
            "INSERT INTO gateway_inboundemail (message_id, raw_sha256, recipient, raw, size, "
            "sender, subject, source, adapter, mailbox, status, attempts, error, received_at) "
            "VALUES (?, ?, ?, ?, 0, '', 'Second', 'smtp', 'other', '', 'handled', 1, '', "
            "'2026-01-01 00:00:00')",
            (key.message_id, key.raw_sha256, key.recipient, second),
        )
    process, port = start_gateway(tmp_path, env)  # the restart
    try:
        for raw in (first, second, third, first):
            assert send(port, raw, [RECIPIENT]) == {}  # 250 for all: duplicates included
        stop_gateway(process)
    finally:
        process.kill()
    handled = (tmp_path / "handled.log").read_text().splitlines()
    assert handled == [f"{RECIPIENT} First", f"{RECIPIENT} Third"]
    with sqlite3.connect(database) as db:
        rows = db.execute(
            "SELECT subject, adapter, status, raw FROM gateway_inboundemail ORDER BY subject"
        ).fetchall()
    assert rows == [
        ("First", "mx", "handled", first),
        ("Second", "other", "handled", second),
        ("Third", "mx", "handled", third),
    ]
