"""What the gateway puts in front of the root app: health and metrics endpoints, event counts."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Literal, TypedDict

from gateway.exceptions import RouteNotFound
from gateway.metrics import MetricsRegistry, registry
from gateway.metrics_access import MetricsAccess
from gateway.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("gateway.server")

HealthStatus = Literal["ok", "degraded", "down"]
METRICS_CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


class AdapterReport(TypedDict):
    """One adapter as `/-/health` shows it."""

    protocol: str
    status: str
    detail: str


class LayerReport(TypedDict):
    """The channel layer as `/-/health` shows it (gateway.layer_health probes it)."""

    backend: str
    status: Literal["ok", "degraded"]
    detail: str


class HealthReport(TypedDict):
    """The body of `/-/health` and of its `/ready` path.

    `live` (what `/-/health` answers 200 for) is true unless `status` is `down`; `ready` (what
    `/-/health/ready` answers 200 for) only when `status` is `ok`.
    """

    status: HealthStatus
    live: bool
    ready: bool
    adapters: dict[str, AdapterReport]
    channel_layer: LayerReport | None
    http: str


def overall_status(
    adapters: dict[str, AdapterReport], stopping: bool, layer: str = "ok"
) -> HealthStatus:
    """Down when stopping or any adapter is down or stopped; degraded when any is not yet ok,
    or the channel layer is unreachable."""
    statuses = {report["status"] for report in adapters.values()}
    if stopping or statuses & {"down", "stopped"}:
        return "down"
    return "degraded" if statuses - {"ok"} or layer != "ok" else "ok"


def is_live(status: HealthStatus) -> bool:
    """Whether the process serves: a restart would not help while it is merely degraded."""
    return status != "down"


def is_ready(status: HealthStatus) -> bool:
    """Whether the process should get new connections and events."""
    return status == "ok"


def ready_path(health_path: str | None) -> str | None:
    """The readiness path, under the health path: `/-/health/ready` by default."""
    return None if health_path is None else f"{health_path.rstrip('/')}/ready"


class HealthEndpoints:
    """Answers the health and metrics paths itself; everything else goes to `app`."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        report: Callable[[], HealthReport],
        health_path: str | None,
        metrics_path: str | None,
        metrics: MetricsRegistry = registry,
        metrics_access: MetricsAccess | None = None,
    ) -> None:
        self.app = app
        self.report = report
        self.health_path = health_path
        self.ready_path = ready_path(health_path)
        self.metrics_path = metrics_path
        self.metrics = metrics
        self.metrics_access = metrics_access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = _app_path(scope) if scope["type"] == "http" else None
        if path is None or path not in (self.health_path, self.ready_path, self.metrics_path):
            await self.app(scope, receive, send)
        elif scope["method"] not in ("GET", "HEAD"):
            await _respond(
                send, 405, b"text/plain; charset=utf-8", b"Method Not Allowed\n", allow=True
            )
        elif path == self.metrics_path:
            await self._metrics(scope, send)
        else:
            await self._health(send, readiness=path == self.ready_path)

    async def _metrics(self, scope: Scope, send: Send) -> None:
        access = self.metrics_access
        refusal = access.refusal(scope) if access is not None else None
        if access is None or refusal is None:
            # Counted when asked for, not kept up to date: a soak watches it for leaked tasks.
            self.metrics.set_gauge("process", "asyncio_tasks", len(asyncio.all_tasks()))
            await _respond(send, 200, METRICS_CONTENT_TYPE, self.metrics.render().encode())
            return
        logger.warning("%s refused to %s (METRICS_ACCESS)", self.metrics_path, scope.get("client"))
        text = b"Unauthorized\n" if refusal == 401 else b"Forbidden\n"
        challenge = access.challenge if refusal == 401 else None
        await _respond(send, refusal, b"text/plain; charset=utf-8", text, challenge=challenge)

    async def _health(self, send: Send, readiness: bool) -> None:
        report = self.report()
        passed = (is_ready if readiness else is_live)(report["status"])
        body = json.dumps(report).encode()
        await _respond(send, 200 if passed else 503, b"application/json", body)


def _app_path(scope: Scope) -> str:
    # uvicorn puts root_path in front of path; the endpoints live under the root path too.
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


async def _respond(
    send: Send,
    status: int,
    content_type: bytes,
    body: bytes,
    allow: bool = False,
    prefix: str = "",
    challenge: bytes | None = None,
) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if allow:
        headers.append((b"allow", b"GET, HEAD"))
    if challenge is not None:
        headers.append((b"www-authenticate", challenge))
    await send({"type": f"{prefix}http.response.start", "status": status, "headers": headers})
    await send({"type": f"{prefix}http.response.body", "body": body})


class AdapterRoutes:
    """HTTP paths served by adapters (webhooks); every other request goes to `app`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.routes: dict[str, ASGIApp] = {}

    def mount(self, path: str, app: ASGIApp, owner: str) -> None:
        """Serve `path` with `app`; a path mounted twice is a configuration error."""
        if not path.startswith("/"):
            raise ValueError(f"Adapter {owner!r}: HTTP path {path!r} must start with '/'.")
        if path in self.routes:
            raise ValueError(f"Adapter {owner!r}: HTTP path {path!r} is already served.")
        self.routes[path] = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.routes:
            route = self.routes.get(_app_path(scope))
            if route is not None:
                await route(scope, receive, send)
                return
        await self.app(scope, receive, send)


class EventCounter:
    """Counts http and websocket scopes received, handled and failed, per protocol.

    An application that raises after accepting a WebSocket gets the connection closed with
    1011 here (uvicorn would drop the TCP connection without a close frame); the exception
    is re-raised so the server logs it with its traceback.
    """

    def __init__(self, app: ASGIApp, metrics: MetricsRegistry = registry) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        protocol = scope["type"]
        if protocol not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        self.metrics.inc(protocol, "received")
        socket = _WebSocketState(receive, send)
        try:
            await self.app(scope, socket.receive, socket.send)
        except RouteNotFound as exc:
            # A client asked for a path nobody serves: a 404, not a server error.
            self.metrics.inc(protocol, "rejected")
            logger.warning("%s %s: %s", protocol, scope.get("path"), exc)
            await socket.refuse_unrouted(scope, send)
            return
        except Exception:
            self.metrics.inc(protocol, "failed")
            await socket.close_after_error()
            raise
        self.metrics.inc(protocol, "handled")


class _WebSocketState:
    """Watches one WebSocket's events to know whether it is open."""

    def __init__(self, receive: Receive, send: Send) -> None:
        self._receive = receive
        self._send = send
        self.open = False
        self.started = False

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "websocket.disconnect":
            self.open = False
        return message

    async def send(self, message: Message) -> None:
        await self._send(message)
        self.started = True
        if message["type"] == "websocket.accept":
            self.open = True
        elif message["type"] == "websocket.close":
            self.open = False

    async def refuse_unrouted(self, scope: Scope, send: Send) -> None:
        """Answer 404 when nothing was sent yet (HTTP, or the WebSocket denial extension)."""
        if self.open or self.started:
            await self.close_after_error()
            return
        body = b"Not Found\n"
        if scope["type"] == "http":
            await _respond(send, 404, b"text/plain; charset=utf-8", body)
        elif "websocket.http.response" in scope.get("extensions", {}):
            await _respond(send, 404, b"text/plain; charset=utf-8", body, prefix="websocket.")
        else:
            await send({"type": "websocket.close", "code": 1008})

    async def close_after_error(self) -> None:
        if not self.open:
            return
        self.open = False
        try:
            await self._send({"type": "websocket.close", "code": 1011})
        except Exception:
            logger.debug("Could not close the WebSocket after an application error.", exc_info=True)
