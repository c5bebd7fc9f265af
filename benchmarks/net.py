"""What every benchmark needs: free loopback ports, waiting for a server, running a load loop."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Coroutine
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
