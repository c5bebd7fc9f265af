"""A throw-away redis-server for tests, started from the installed binary.

Each instance runs in its own temporary directory on a free 127.0.0.1 port, without
persistence (`--save "" --appendonly no`), so a restart brings it back empty on the SAME port,
as a crashed production Redis without persistence would come back. The system Redis on 6379
is never touched.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.integration.support import free_port, not_installed

__all__ = [
    "RedisSentinel",
    "RedisServer",
    "free_port",
    "redis_server_or_skip",
    "running_redis",
    "running_sentinel",
]

START_TIMEOUT = 30.0  # generous: only there to turn a broken start into a failure


def redis_server_or_skip() -> str:
    """The redis-server binary; skip the test when it is missing (fail in CI)."""
    path = shutil.which("redis-server")
    if path is None:
        message = "redis-server is not installed (Debian: apt-get install redis-server)"
        not_installed(message)
    return path


@dataclass
class RedisServer:
    """One redis-server process; `start`, `stop` (SIGKILL, like a crash), `restart`."""

    binary: str
    directory: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.directory / "redis.log"

    def start(self) -> None:
        """Start on `port` and wait until it answers PING."""
        argv = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "no",
            "--logfile", str(self.log_path),
        ]  # fmt: skip
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT
        while not self.ping():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                log = self.log_path.read_text() if self.log_path.exists() else ""
                raise RuntimeError(f"redis-server did not start on {self.port}:\n{log}")
            time.sleep(0.02)

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        """Kill the server (no chance to save anything) and wait until the port is closed."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        self.proc = None

    def restart(self) -> None:
        """Stop, then start again on the same port, empty."""
        self.stop()
        self.start()


@contextmanager
def running_redis() -> Iterator[RedisServer]:
    """A started RedisServer in a temporary directory, stopped and removed afterwards."""
    binary = redis_server_or_skip()
    with tempfile.TemporaryDirectory(prefix="gateway-redis-") as directory:
        server = RedisServer(binary, Path(directory))
        server.start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the whole session (tests use their own key prefixes)."""
    with running_redis() as server:
        yield server


@pytest.fixture
def own_redis_server() -> Iterator[RedisServer]:
    """A redis-server of the test's own, which it may stop and restart."""
    with running_redis() as server:
        yield server


@dataclass
class RedisSentinel:
    """A Sentinel (redis-server --sentinel) watching one master under `master_name`."""

    binary: str
    directory: Path
    master: RedisServer
    master_name: str = "gateway"
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        config = self.directory / "sentinel.conf"
        config.write_text(
            "\n".join(
                [
                    f"port {self.port}",
                    "bind 127.0.0.1",
                    f"sentinel monitor {self.master_name} 127.0.0.1 {self.master.port} 1",
                    f"sentinel down-after-milliseconds {self.master_name} 1000",
                    "",
                ]
            )
        )
        log = (self.directory / "sentinel.log").open("w")
        self.proc = subprocess.Popen(
            [self.binary, str(config), "--sentinel"], stdin=subprocess.DEVNULL, stdout=log
        )
        deadline = time.monotonic() + START_TIMEOUT
        while not self._knows_master():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis sentinel did not start on {self.port}")
            time.sleep(0.05)

    def _knows_master(self) -> bool:
        command = f"SENTINEL get-master-addr-by-name {self.master_name}\r\n".encode()
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(command)
                return str(self.master.port).encode() in sock.recv(256)
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        self.proc = None


@contextmanager
def running_sentinel(master: RedisServer) -> Iterator[RedisSentinel]:
    """A started Sentinel watching `master`, stopped and removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="gateway-sentinel-") as directory:
        sentinel = RedisSentinel(master.binary, Path(directory), master)
        sentinel.start()
        try:
            yield sentinel
        finally:
            sentinel.stop()
