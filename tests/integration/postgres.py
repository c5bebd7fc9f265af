"""A throw-away PostgreSQL server for tests, started from the installed binaries.

`initdb` makes a cluster with trust authentication in a temporary directory, and `postgres`
serves it on a free 127.0.0.1 port (its Unix socket stays in that directory too), without
fsync: the data is thrown away afterwards. PostgreSQL refuses to run as root, so under root
both run as the `postgres` OS user (or `nobody`) through `setpriv`, in a directory that user
owns. The system server on 5432 is never touched.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.integration.support import free_port, not_installed, started

__all__ = [
    "PostgresServer",
    "postgres_bin_dir_or_skip",
    "postgres_server",
    "running_postgres",
]

START_TIMEOUT = 60.0  # generous: only there to turn a broken start into a failure
SUPERUSER = "postgres"  # the database role initdb creates, whoever runs the server


def _bin_dir() -> Path | None:
    """The newest installed server's bin directory (Debian layout, else the PATH)."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: [int(n) for n in re.findall(r"\d+", Path(path).parent.parent.name)],
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def postgres_bin_dir_or_skip() -> Path:
    """Where `initdb` and `postgres` are, and psycopg is importable; else skip (fail in CI)."""
    bin_dir = _bin_dir()
    if bin_dir is None or not (bin_dir / "postgres").exists():
        not_installed("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        not_installed("psycopg is not installed (pip install 'psycopg[binary]')")
    return bin_dir


def _server_user() -> pwd.struct_passwd | None:
    """The OS user PostgreSQL runs as: None for the current one, unless that is root."""
    if os.geteuid() != 0:
        return None
    users = {user.pw_name: user for user in pwd.getpwall()}
    user = users.get("postgres") or users.get("nobody")
    if user is None:
        not_installed("running as root and there is neither a postgres nor a nobody user")
    return user


def _run_as(user: pwd.struct_passwd | None) -> list[str]:
    """The command prefix that runs a PostgreSQL binary as `user`."""
    if user is None:
        return []
    if shutil.which("setpriv") is None:  # runuser would fork: signals would miss the server
        not_installed("running as root and setpriv (util-linux) is not installed")
    return ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"]


@dataclass
class PostgresServer:
    """One PostgreSQL cluster and its postmaster; `start`, `stop`, `dsn`."""

    bin_dir: Path
    directory: Path
    run_as: pwd.struct_passwd | None = None
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    host = "127.0.0.1"
    user = SUPERUSER

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def log_path(self) -> Path:
        return self.directory / "postgres.log"

    def dsn(self, dbname: str = "postgres") -> str:
        """A libpq connection string for `dbname` on this server."""
        return f"host={self.host} port={self.port} user={self.user} dbname={dbname}"

    def init(self) -> None:
        """Create the cluster: trust authentication, UTF-8, no fsync."""
        argv = [
            *_run_as(self.run_as),
            str(self.bin_dir / "initdb"),
            "--pgdata", str(self.data_dir),
            "--auth=trust",
            f"--username={SUPERUSER}",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        ]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, timeout=START_TIMEOUT, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed ({done.returncode}):\n{done.stderr.decode()}")

    def start(self) -> None:
        """Start the postmaster on `port` and wait until it accepts connections."""
        argv = [
            *_run_as(self.run_as),
            str(self.bin_dir / "postgres"),
            "-D", str(self.data_dir),
            "-p", str(self.port),
            "-c", f"listen_addresses={self.host}",
            "-c", f"unix_socket_directories={self.directory}",
            # Throw-away data: durability would only slow the tests down.
            "-c", "fsync=off",
            "-c", "synchronous_commit=off",
            "-c", "full_page_writes=off",
            "-c", "max_connections=60",
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        deadline = time.monotonic() + START_TIMEOUT
        while not self.ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                log_text = self.log_path.read_text(errors="replace")
                self.stop()
                raise RuntimeError(f"postgres did not start on {self.port}:\n{log_text}")
            time.sleep(0.05)

    def ready(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.dsn(), connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def stop(self) -> None:
        """Fast shutdown (SIGINT: sessions are ended, no checkpoint wait), kill if stuck."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        self.proc = None


@contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """A started PostgresServer in a temporary directory, stopped and removed afterwards."""
    bin_dir = postgres_bin_dir_or_skip()
    with tempfile.TemporaryDirectory(prefix="gateway-postgres-") as directory:
        user = _server_user()
        if user is not None:  # the server's user must own its directory
            os.chown(directory, user.pw_uid, user.pw_gid)
        server = PostgresServer(bin_dir, Path(directory), user)
        server.init()
        with started(server):
            yield server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the whole session."""
    with running_postgres() as server:
        yield server
