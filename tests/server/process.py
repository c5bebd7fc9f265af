"""Start `gateway run` as a subprocess and read its listener lines."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
E2E_APP = "tests.server.e2e_app:application"
READY_TIMEOUT = 60.0  # generous: only there to avoid hanging on a broken start


@dataclass
class GatewayProcess:
    """A running `gateway run` and what it printed."""

    proc: subprocess.Popen[str]
    stderr_path: Path
    stdout_lines: list[str] = field(default_factory=list)
    listeners: dict[str, str] = field(default_factory=dict)
    output: queue.Queue[str | None] = field(default_factory=queue.Queue)

    @property
    def http_url(self) -> str:
        return self.listeners["http"]

    @property
    def ws_url(self) -> str:
        return self.http_url.replace("http://", "ws://", 1)

    @property
    def http_port(self) -> int:
        return int(self.http_url.rsplit(":", 1)[1])

    @property
    def line_port(self) -> int:
        return int(self.listeners["line"].rsplit(":", 1)[1])

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def read_until(self, wanted: str, timeout: float = READY_TIMEOUT) -> list[str]:
        """Read stdout past `wait_ready` until a line holds `wanted`; return the lines read."""
        read: list[str] = []
        while not read or wanted not in read[-1]:
            line = self.output.get(timeout=timeout)
            if line is None:
                raise EOFError(f"the gateway ended before printing {wanted!r}: {read}")
            read.append(line)
            self.stdout_lines.append(line)
        return read

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)


def gateway_env(tmp_path: Path, settings: str = "tests.server.e2e_settings") -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}
    env.update(
        DJANGO_SETTINGS_MODULE=settings,
        PYTHONUNBUFFERED="1",
        GATEWAY_E2E_LIFESPAN_MARKER=str(tmp_path / "lifespan"),
        GATEWAY_E2E_STOP_MARKER=str(tmp_path / "adapter-stopped"),
    )
    return env


def spawn(
    tmp_path: Path,
    *args: str,
    env: dict[str, str] | None = None,
    command: list[str] | None = None,
    cwd: Path = ROOT,
) -> GatewayProcess:
    """Start the gateway (by default `python -m gateway run E2E_APP --port 0 ARGS`) in `cwd`."""
    stderr_path = tmp_path / "stderr.log"
    argv = command or [sys.executable, "-m", "gateway", "run", E2E_APP, "--port", "0"]
    proc = subprocess.Popen(
        [*argv, *args],
        cwd=cwd,
        env=env or gateway_env(tmp_path),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=stderr_path.open("w"),
        text=True,
    )
    return GatewayProcess(proc, stderr_path)


def wait_ready(process: GatewayProcess) -> bool:
    """Read stdout until `gateway: ready` (True) or the process ends (False)."""
    lines = process.output
    threading.Thread(target=_pump, args=(process.proc, lines), daemon=True).start()
    while True:
        line = lines.get(timeout=READY_TIMEOUT)
        if line is None:
            return False
        process.stdout_lines.append(line)
        if line == "gateway: ready":
            return True
        protocol, _, address = line.removeprefix("gateway: ").partition(" listening on ")
        process.listeners[protocol] = address


def _pump(proc: subprocess.Popen[str], lines: queue.Queue[str | None]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.put(line.rstrip("\n"))
    lines.put(None)
