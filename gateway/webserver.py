"""uvicorn embedded in the gateway's event loop: the HTTP and WebSocket listener."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator
from typing import Any

import uvicorn

from gateway.adapters import Listener
from gateway.conf import HTTPSettings
from gateway.types import ASGIApp

logger = logging.getLogger("gateway.server")


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signals to the gateway and shares its lifespan state."""

    def __init__(self, config: uvicorn.Config, state: dict[str, Any]) -> None:
        super().__init__(config)
        self.app_state = state
        self.ready = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn's own version re-raises the signal on exit, killing the process by signal
        # instead of letting the gateway return its exit code.
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        # The gateway runs lifespan itself; scopes still get a copy of its state.
        self.lifespan.state = self.app_state
        await super().startup(sockets)
        self.ready.set()


def bind_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port (port 0 picks a free one), not yet listening."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


def http_address(sock: socket.socket) -> str:
    """The URL a client uses to reach `sock`, e.g. http://127.0.0.1:8000."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class WebServer:
    """HTTP and WebSocket on one socket, served by uvicorn inside the running loop."""

    def __init__(
        self, app: ASGIApp, http: HTTPSettings, shutdown_timeout: float, state: dict[str, Any]
    ) -> None:
        config = uvicorn.Config(
            app=app,
            host=http.host,
            port=http.port,
            http="httptools",
            ws="websockets-sansio",
            lifespan="off",
            ws_max_size=http.ws_max_size,
            ws_ping_interval=http.ws_ping_interval,
            ws_ping_timeout=http.ws_ping_timeout,
            ws_per_message_deflate=http.ws_per_message_deflate,
            proxy_headers=http.proxy_headers,
            forwarded_allow_ips=http.forwarded_allow_ips,
            root_path=http.root_path,
            backlog=http.backlog,
            limit_concurrency=http.limit_concurrency,
            # uvicorn types it int but only ever passes it to asyncio.wait_for.
            timeout_graceful_shutdown=shutdown_timeout,  # type: ignore[arg-type]
            log_config=None,
        )
        self.settings = http
        self.server = _EmbeddedServer(config, state)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> Listener:
        """Bind, start serving and return the listener once uvicorn accepts connections."""
        sock = bind_socket(self.settings.host, self.settings.port)
        address = http_address(sock)
        self._task = asyncio.create_task(self.server.serve(sockets=[sock]), name="gateway-http")
        ready = asyncio.create_task(self.server.ready.wait())
        await asyncio.wait([self._task, ready], return_when=asyncio.FIRST_COMPLETED)
        if not self.server.ready.is_set():
            ready.cancel()
            sock.close()
            await self._task  # re-raises what stopped uvicorn from starting
            raise RuntimeError("uvicorn stopped before it started")
        return Listener("http", address)

    @property
    def task(self) -> asyncio.Task[None] | None:
        """The task running uvicorn; done when it stopped."""
        return self._task

    async def stop(self) -> None:
        """Stop accepting, close WebSockets with 1012 and drain up to SHUTDOWN_TIMEOUT."""
        self.server.should_exit = True
        if self._task is not None:
            await self._task

    def force(self) -> None:
        """Stop waiting for connections and tasks; a second signal calls this."""
        self.server.should_exit = True
        self.server.force_exit = True
