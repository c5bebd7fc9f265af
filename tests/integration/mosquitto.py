"""A throw-away Mosquitto broker for tests, started from the installed binary.

Each instance lives in its own temporary directory (config, persistence, log) and listens on a
free 127.0.0.1 port, anonymous clients allowed. It can be stopped (SIGTERM, which saves its
persistence file, or SIGKILL) and started again on the same port; sessions and queued QoS 1
messages survive a SIGTERM restart. The system Mosquitto on 1883 is never touched.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.integration.support import free_port, not_installed

__all__ = ["MOSQUITTO", "Mosquitto", "free_port", "mosquitto_or_skip", "running_mosquitto"]

MOSQUITTO = "/usr/sbin/mosquitto"
START_TIMEOUT = 30.0  # generous: only there to turn a broken start into a failure


def mosquitto_or_skip() -> str:
    """The mosquitto binary; skip the test when it is missing (fail in CI)."""
    path = shutil.which("mosquitto") or (MOSQUITTO if os.path.exists(MOSQUITTO) else None)
    if path is None or shutil.which("mosquitto_pub") is None:
        message = "mosquitto is not installed (Debian: apt-get install mosquitto mosquitto-clients)"
        not_installed(message)
    return path


@dataclass
class Mosquitto:
    """One Mosquitto process in its own directory; `start`, `stop`, `kill`, `restart`."""

    binary: str
    directory: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    max_inflight: int = 0
    extra_config: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.directory / "mosquitto.log"

    def config(self) -> str:
        return "\n".join(
            [
                f"listener {self.port} 127.0.0.1",
                *([] if "allow_anonymous false" in self.extra_config else ["allow_anonymous true"]),
                # Run as root, mosquitto switches to user "mosquitto", who cannot write here.
                f"user {getpass.getuser()}",
                "persistence true",
                f"persistence_location {self.directory}/",
                "autosave_interval 1",
                "log_dest stderr",
                "log_type error",
                "log_type warning",
                "log_type notice",
                "max_queued_messages 100000",
                # 0 = no limit on unacknowledged QoS 1/2 messages to MQTT 3.1.1 clients.
                f"max_inflight_messages {self.max_inflight}",
                *self.extra_config,
                "",
            ]
        )

    def start(self) -> None:
        """Start on `port`; return once it accepts TCP connections."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        conf = self.directory / "mosquitto.conf"
        conf.write_text(self.config())
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(conf)], stdout=log, stderr=log, stdin=subprocess.DEVNULL
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log_path.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on {self.port}: {self.log_path.read_text()}")

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """Stop it (SIGTERM saves the persistence file; SIGKILL loses what was unsaved)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(30)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()


@contextmanager
def running_mosquitto(max_inflight: int = 0, *extra_config: str) -> Iterator[Mosquitto]:
    """A started Mosquitto in a temporary directory, stopped and removed afterwards."""
    binary = mosquitto_or_skip()
    with tempfile.TemporaryDirectory(prefix="mosquitto-") as directory:
        broker = Mosquitto(binary, Path(directory), max_inflight=max_inflight)
        broker.extra_config = list(extra_config)
        broker.start()
        try:
            yield broker
        finally:
            broker.kill()
