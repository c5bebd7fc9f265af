"""Throw-away redis-servers for tests, started from the installed binary.

Each instance runs in its own temporary directory on a free 127.0.0.1 port, without
persistence (`--save "" --appendonly no`), so a restart brings it back empty on the SAME port,
as a crashed production Redis without persistence would come back. The system Redis on 6379
is never touched. Also here: a Sentinel, a Redis Cluster of several such servers, and a Redis
serving TLS only, with a certificate authority made for the test by `openssl`.
"""

from __future__ import annotations

import shutil
import socket
import ssl
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
    "RedisCluster",
    "RedisSentinel",
    "RedisServer",
    "TLSFiles",
    "free_port",
    "make_tls_files",
    "redis_server_or_skip",
    "running_cluster",
    "running_redis",
    "running_sentinel",
    "running_tls_redis",
]

START_TIMEOUT = 30.0  # generous: only there to turn a broken start into a failure


def redis_server_or_skip() -> str:
    """The redis-server binary; skip the test when it is missing (fail in CI)."""
    path = shutil.which("redis-server")
    if path is None:
        message = "redis-server is not installed (Debian: apt-get install redis-server)"
        not_installed(message)
    return path


@dataclass(frozen=True)
class TLSFiles:
    """A test certificate authority, and a certificate it signed for 127.0.0.1."""

    ca: Path
    cert: Path
    key: Path


def make_tls_files(directory: Path) -> TLSFiles:
    """Make a CA and a server certificate for 127.0.0.1 with the openssl command."""
    if shutil.which("openssl") is None:
        not_installed("openssl is not installed (Debian: apt-get install openssl)")
    ca_key, ca = directory / "ca.key", directory / "ca.crt"
    key, request, cert = (
        directory / "server.key",
        directory / "server.csr",
        directory / "server.crt",
    )
    extensions = directory / "server.ext"
    extensions.write_text("subjectAltName = IP:127.0.0.1, DNS:localhost\n")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=Gateway test CA", "-keyout", str(ca_key), "-out", str(ca))  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", str(key), "-out", str(request))  # fmt: skip
    openssl("x509", "-req", "-in", str(request), "-CA", str(ca), "-CAkey", str(ca_key),
            "-CAcreateserial", "-days", "2", "-extfile", str(extensions),
            "-out", str(cert))  # fmt: skip
    return TLSFiles(ca=ca, cert=cert, key=key)


@dataclass
class RedisServer:
    """One redis-server process; `start`, `stop` (SIGKILL, like a crash), `restart`.

    `extra_args` go on its command line (cluster options); with `tls`, it serves TLS only."""

    binary: str
    directory: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    extra_args: list[str] = field(default_factory=list)
    tls: TLSFiles | None = None

    @property
    def url(self) -> str:
        scheme = "rediss" if self.tls is not None else "redis"
        return f"{scheme}://127.0.0.1:{self.port}/0"

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
            *self.extra_args,
        ]  # fmt: skip
        if self.tls is not None:
            argv += [
                "--port", "0",
                "--tls-port", str(self.port),
                "--tls-cert-file", str(self.tls.cert),
                "--tls-key-file", str(self.tls.key),
                "--tls-ca-cert-file", str(self.tls.ca),
                "--tls-auth-clients", "no",
            ]  # fmt: skip
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT
        while not self.ping():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                log = self.log_path.read_text() if self.log_path.exists() else ""
                raise RuntimeError(f"redis-server did not start on {self.port}:\n{log}")
            time.sleep(0.02)

    def ping(self) -> bool:
        return self.command("PING").startswith(b"+PONG")

    def command(self, line: str) -> bytes:
        """Send one inline command; its reply's first 64 kB, or b"" when nobody answers."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as raw:
                sock = raw
                if self.tls is not None:
                    context = ssl.create_default_context(cafile=str(self.tls.ca))
                    sock = context.wrap_socket(raw, server_hostname="127.0.0.1")
                sock.sendall(line.encode() + b"\r\n")
                return sock.recv(65536)
        except OSError:
            return b""

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
    with (
        tempfile.TemporaryDirectory(prefix="gateway-redis-") as directory,
        started(RedisServer(binary, Path(directory))) as server,
    ):
        yield server


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
                    f"sentinel failover-timeout {self.master_name} 5000",
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
    with (
        tempfile.TemporaryDirectory(prefix="gateway-sentinel-") as directory,
        started(RedisSentinel(master.binary, Path(directory), master)) as sentinel,
    ):
        yield sentinel


@contextmanager
def running_tls_redis() -> Iterator[RedisServer]:
    """A RedisServer serving TLS only (rediss://), with its test CA in `server.tls.ca`."""
    binary = redis_server_or_skip()
    with tempfile.TemporaryDirectory(prefix="gateway-redis-tls-") as directory:
        tls = make_tls_files(Path(directory))
        with started(RedisServer(binary, Path(directory), tls=tls)) as server:
            yield server


@dataclass
class RedisCluster:
    """A Redis Cluster of `masters` masters, each with `replicas` replicas, on free ports.

    Nodes fail over fast (`cluster-node-timeout` 1 s), so a test can kill a master and watch
    its replica take over."""

    binary: str
    directory: Path
    masters: int = 3
    replicas: int = 0
    nodes: list[RedisServer] = field(default_factory=list)

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def start(self) -> None:
        for number in range(self.masters * (1 + self.replicas)):
            directory = self.directory / f"node-{number}"
            directory.mkdir()
            node = RedisServer(self.binary, directory)
            node.extra_args = [
                "--cluster-enabled", "yes",
                "--cluster-config-file", str(directory / "nodes.conf"),
                "--cluster-node-timeout", "1000",
                "--cluster-port", str(free_port()),
                "--repl-diskless-sync-delay", "0",
            ]  # fmt: skip
            node.start()
            self.nodes.append(node)
        cli = shutil.which("redis-cli")
        if cli is None:
            not_installed("redis-cli is not installed (Debian: apt-get install redis-tools)")
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        subprocess.run(
            [cli, "--cluster", "create", *addresses,
             "--cluster-replicas", str(self.replicas), "--cluster-yes"],
            check=True, capture_output=True, timeout=START_TIMEOUT,
        )  # fmt: skip
        self.wait_until_ok()

    def wait_until_ok(self, nodes: list[RedisServer] | None = None) -> None:
        """Wait until every running node (or those given) reports cluster_state:ok, and every
        replica has synchronised with its master (a replica that never did cannot take over)."""
        deadline = time.monotonic() + START_TIMEOUT
        for node in nodes if nodes is not None else self.running():
            while not self._ready(node):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the Redis Cluster is not ok on {node.port}")
                time.sleep(0.05)

    @staticmethod
    def _ready(node: RedisServer) -> bool:
        if b"cluster_state:ok" not in node.command("CLUSTER INFO"):
            return False
        replication = node.command("INFO replication")
        return b"role:master" in replication or b"master_link_status:up" in replication

    def running(self) -> list[RedisServer]:
        return [node for node in self.nodes if node.proc is not None]

    def master_of(self, slot: int) -> RedisServer:
        """The running node that serves `slot` now, by its own CLUSTER NODES."""
        for node in self.running():
            reply = node.command("CLUSTER NODES")
            for line in reply.decode().splitlines()[1:]:  # after the bulk string's length
                fields = line.split()
                if len(fields) >= 8 and "myself" in fields[2] and "master" in fields[2]:
                    for span in fields[8:]:
                        low, _, high = span.partition("-")
                        if low.isdigit() and int(low) <= slot <= int(high or low):
                            return node
        raise RuntimeError(f"no running master serves slot {slot}")

    def wait_for_failover(self, dead: RedisServer, slot: int) -> RedisServer:
        """Wait until a node other than `dead` serves `slot`, and the cluster is ok again."""
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                master = self.master_of(slot)
            except RuntimeError:
                master = dead
            if master is not dead:
                self.wait_until_ok()
                return master
            if time.monotonic() > deadline:
                raise RuntimeError(f"no replica took over slot {slot}")
            time.sleep(0.1)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@contextmanager
def running_cluster(masters: int = 3, replicas: int = 0) -> Iterator[RedisCluster]:
    """A started RedisCluster, stopped and removed afterwards."""
    binary = redis_server_or_skip()
    with (
        tempfile.TemporaryDirectory(prefix="gateway-redis-cluster-") as directory,
        started(RedisCluster(binary, Path(directory), masters, replicas)) as cluster,
    ):
        yield cluster
