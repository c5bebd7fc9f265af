"""What the fixtures for real servers share: loopback ports, and the rule for a missing one."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn, Protocol, TypeVar

import pytest


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def not_installed(message: str) -> NoReturn:
    """A server or tool a test needs is missing: a failure under CI, a skip elsewhere."""
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


class _Server(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...


ServerT = TypeVar("ServerT", bound=_Server)


@contextmanager
def started(server: ServerT) -> Iterator[ServerT]:
    """Start a test server, and stop it afterwards, also when starting it failed half-way."""
    try:
        server.start()
        yield server
    finally:
        server.stop()
