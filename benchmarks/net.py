"""What the benchmarks share: free loopback ports, starting the servers, running a load loop."""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, attempts: int = 400) -> None:
    """Wait until something accepts connections on 127.0.0.1:`port`."""
    for _ in range(attempts):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


def run_loop(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a load generator on uvloop when installed (a cheap client), else asyncio."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def start_gateway(app: str, env: dict[str, str], cwd: Path) -> tuple[subprocess.Popen[str], int]:
    """`gateway run APP --port 0` as a subprocess; its HTTP port, read from its start-up lines."""
    command = [sys.executable, "-m", "gateway", "run", app, "--port", "0", "--log-level", "warning"]
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        match = re.match(r"gateway: http listening on http://[\d.]+:(\d+)", line)
        if match:
            return proc, int(match.group(1))
    raise RuntimeError("the gateway exited before listening")


def start_uvicorn(
    app: str, env: dict[str, str], cwd: Path, *options: str
) -> tuple[subprocess.Popen[str], int]:
    """`uvicorn APP` with `options` as a subprocess on a free port, once it accepts connections."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", app, "--port", str(port), *options]
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, text=True)
    wait_port(port)
    return proc, port
