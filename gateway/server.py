"""The gateway process: one event loop running uvicorn and every protocol adapter.

Start-up, in order: validate GATEWAY, put the in-memory channel layer in place when
CHANNEL_LAYERS is not set (and say so), run the application's lifespan startup, start uvicorn
on its own socket, start each enabled adapter, then write one line per listener and
``gateway: ready`` to stdout. SIGTERM or SIGINT stops accepting everywhere, drains for up
to SHUTDOWN_TIMEOUT seconds, runs the lifespan shutdown and returns exit code 0; a second
signal stops waiting.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import importlib.util
import logging
import signal
import sys
from collections.abc import Callable
from typing import Any, Literal

from django.utils.module_loading import import_string

from gateway import tracing
from gateway.adapters import AdapterContext, AdapterHealth, Listener, ProtocolAdapter
from gateway.conf import AdapterSettings, GatewaySettings, gateway_settings
from gateway.health import (
    AdapterReport,
    AdapterRoutes,
    EventCounter,
    HealthEndpoints,
    HealthReport,
    LayerReport,
    is_live,
    is_ready,
    overall_status,
    ready_path,
)
from gateway.layer_health import LayerProbe
from gateway.layers import DEFAULT_CHANNEL_LAYER, channel_layers
from gateway.layers.memory import InMemoryChannelLayer
from gateway.lifespan import Lifespan
from gateway.metrics import registry
from gateway.metrics_access import MetricsAccess
from gateway.request_threads import RequestThreads, SyncThreadsMiddleware
from gateway.turns import rest_for, thread_calls, turns, when_thread_calls_end
from gateway.types import ASGIApp
from gateway.webserver import WebServer

__all__ = ["Gateway"]

logger = logging.getLogger("gateway.server")

# Time granted past SHUTDOWN_TIMEOUT for components to finish after their own deadline.
STOP_GRACE = 2.0
# CPython's default gen0 threshold, and what `gateway run` raises it to once started: with 100
# MQTT messages in flight the young objects alone passed 700 about every 40 messages
# (benchmarks/README.md, "MQTT intake").
DEFAULT_GEN0_THRESHOLD = 700
SETTLED_GEN0_THRESHOLD = 10_000


class _StartFailed(Exception):
    """A component could not start; its error is already logged."""


class _RunningAdapter:
    """An adapter and where it is in its life, for health reports."""

    def __init__(self, name: str, adapter: ProtocolAdapter) -> None:
        self.name = name
        self.adapter = adapter
        self.phase: str = "starting"
        self.serves_http = False  # it has webhook paths on the HTTP server

    def health(self) -> AdapterHealth:
        if self.phase != "running":
            return AdapterHealth("stopped" if self.phase == "stopped" else "starting")
        try:
            return self.adapter.health()
        except Exception as exc:
            logger.exception("Adapter %r health() raised.", self.name)
            return AdapterHealth("down", f"health() raised {exc!r}")


class Gateway:
    """One gateway process: HTTP and WebSocket through uvicorn, other protocols through adapters."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        settings: GatewaySettings | None = None,
        host: str | None = None,
        port: int | None = None,
    ) -> None:
        self.app = app
        self.settings = settings if settings is not None else gateway_settings
        self.host = host
        self.port = port
        self.listeners: list[Listener] = []
        self.state: dict[str, Any] = {}
        self._adapters: list[_RunningAdapter] = []
        self._web: WebServer | None = None
        self._routes = AdapterRoutes(EventCounter(app))
        self._stop = asyncio.Event()
        self._stopping = False
        self._forced = False
        self._draining: list[asyncio.Task[bool]] = []
        self._layer_probe: LayerProbe | None = None
        self._request_threads: RequestThreads | None = None
        self._stop_resuming: Callable[[], None] = lambda: None

    def run(self) -> int:
        """Run in a new event loop (uvloop when installed and LOOP allows); return the exit code."""
        if self.settings.switch_interval is not None:
            # How long a thread waiting for the GIL (the database thread, Django's views) may
            # wait while the event loop computes: the whole process's, hence only here.
            sys.setswitchinterval(self.settings.switch_interval)
        with asyncio.Runner(loop_factory=loop_factory(self.settings.loop)) as runner:
            loop = runner.get_loop()
            logger.info(
                "Event loop: %s.%s; GIL switch interval %g ms.",
                type(loop).__module__,
                type(loop).__qualname__,
                sys.getswitchinterval() * 1000,
            )
            return runner.run(self.serve(settle_heap=True))

    def stop(self) -> None:
        """Begin a graceful stop, as SIGTERM does; a second call stops waiting for drains."""
        if self._stop.is_set():
            self._force()
        self._stop.set()

    async def serve(self, ready: asyncio.Event | None = None, *, settle_heap: bool = False) -> int:
        """Start everything, serve until stopped, drain and return the exit code.

        With `settle_heap` (a process of its own, as under `gateway run`), `settle_heap()` runs
        once everything listens.
        """
        problems = self.settings.problems()
        for problem in problems:
            logger.error("%s%s", problem, f" ({problem.hint})" if problem.hint else "")
        if problems:
            return 1
        tracing.configure()  # the application, imported by now, may have set a provider
        loop_turns = turns()
        loop_turns.rest = rest_for(self.settings.loop_share)
        loop_turns.thread_work = [self._request_thread_calls]
        signals = _install_signal_handlers(self.stop)
        default_layer = _default_channel_layer()
        try:
            return await self._serve(ready, settle_heap)
        finally:
            _remove_signal_handlers(signals)
            if (
                default_layer is not None
                and channel_layers.backends.get(DEFAULT_CHANNEL_LAYER) is default_layer
            ):
                del channel_layers.backends[DEFAULT_CHANNEL_LAYER]

    def _request_thread_calls(self) -> int:
        """Django's synchronous calls running or waiting on the request threads."""
        threads = self._request_threads
        return 0 if threads is None else threads.running + threads.waiting

    async def _serve(self, ready: asyncio.Event | None, settle: bool) -> int:
        lifespan = Lifespan(self.app, self.state)
        if not await lifespan.startup():
            logger.error("Application startup failed; not starting.")
            return 1
        outcome = await self._start_or_abort()
        if outcome == "started":
            if settle:
                settle_heap()
            _announce(self.listeners)
            if ready is not None:
                ready.set()
            await self._wait_for_stop()
        clean = await self._drain()
        if self._request_threads is not None:
            self._stop_resuming()
            self._request_threads.shutdown()
        if not self._forced:
            clean = await lifespan.shutdown(self.settings.shutdown_timeout) and clean
        return 0 if outcome != "failed" and clean else 1

    async def _start_or_abort(self) -> Literal["started", "failed", "stopped"]:
        """Start every listener, unless one fails or a stop signal comes first."""
        starting = asyncio.create_task(self._start_all())
        stop_waiter = asyncio.create_task(self._stop.wait())
        await asyncio.wait([starting, stop_waiter], return_when=asyncio.FIRST_COMPLETED)
        stop_waiter.cancel()
        if not starting.done():
            logger.info("Stop requested during start-up.")
            starting.cancel()
        try:
            await starting
        except _StartFailed:
            return "failed"
        except asyncio.CancelledError:
            if not self._stop.is_set():
                raise
            return "stopped"
        return "stopped" if self._stop.is_set() else "started"

    async def _start_all(self) -> None:
        if self.settings.http.enabled:
            self._web = self._build_web()
        for entry in self.settings.adapters:
            if entry.enabled:
                await self._start_adapter(entry)
        if self._web is not None:
            # Only now: a webhook request must never reach the root app (a 404) because its
            # adapter had not mounted its paths yet.
            await self._start_http(self._web)
        self._layer_probe = LayerProbe.for_default_layer()
        if self._layer_probe is not None:
            await self._layer_probe.start()

    def _build_web(self) -> WebServer:
        http = self.settings.http
        http = dataclasses.replace(
            http, host=self.host or http.host, port=http.port if self.port is None else self.port
        )
        if http.sync_threads is not None:
            # Django's views run on a bounded pool of reused threads, not one new per request.
            # While an adapter waits on its database thread, fewer views compete for the GIL.
            busy = None if http.sync_threads_busy is None else _adapters_wait_on_threads
            self._request_threads = RequestThreads(
                http.sync_threads, busy=busy, busy_size=http.sync_threads_busy or 1
            )
            if busy is not None:
                self._stop_resuming = when_thread_calls_end(self._request_threads.resume)
            self._routes.app = EventCounter(SyncThreadsMiddleware(self.app, self._request_threads))
        return WebServer(self._wrapped_app(), http, self.settings.shutdown_timeout, self.state)

    async def _start_http(self, web: WebServer) -> None:
        http = web.settings
        try:
            self.listeners.insert(0, await web.start())
        except OSError as exc:
            logger.error("Cannot listen on %s:%s: %s", http.host, http.port, exc)
            raise _StartFailed from exc
        except Exception as exc:
            logger.exception("The HTTP server failed to start.")
            raise _StartFailed from exc

    async def _start_adapter(self, entry: AdapterSettings) -> None:
        try:
            adapter = self._build_adapter(entry)
            running = _RunningAdapter(entry.name, adapter)
            self._adapters.append(running)
            listeners = await adapter.start()
        except Exception as exc:
            logger.exception("Adapter %r (%s) failed to start.", entry.name, entry.backend)
            raise _StartFailed from exc
        running.phase = "running"
        self.listeners.extend(listeners)
        running.serves_http = self._mount_routes(entry.name, adapter)

    def _mount_routes(self, name: str, adapter: ProtocolAdapter) -> bool:
        """Put the adapter's webhook paths on the HTTP server, in front of the root app;
        True when it has any."""
        try:
            routes = dict(adapter.http_routes())
            if routes and self._web is None:
                raise ValueError(f"Adapter {name!r} serves HTTP paths but HTTP is disabled.")
            for path, app in routes.items():
                own = self.settings.health_path, ready_path(self.settings.health_path)
                if path in (*own, self.settings.metrics_path):
                    raise ValueError(f"Adapter {name!r}: HTTP path {path!r} is the gateway's own.")
                self._routes.mount(path, app, name)
        except Exception as exc:
            logger.error("%s", exc)
            raise _StartFailed from exc
        return bool(routes)

    def _build_adapter(self, entry: AdapterSettings) -> ProtocolAdapter:
        adapter_class: type[ProtocolAdapter] = import_string(entry.backend)
        context = AdapterContext(
            app=self.app,
            name=entry.name,
            options=entry.options,
            metrics=registry,
            dead_letter=self.settings.dead_letter_handler(),
            state=self.state,
        )
        return adapter_class(context)

    def _wrapped_app(self) -> ASGIApp:
        return HealthEndpoints(
            self._routes,
            report=self.health,
            health_path=self.settings.health_path,
            metrics_path=self.settings.metrics_path,
            metrics_access=MetricsAccess.from_setting(self.settings.raw["METRICS_ACCESS"]),
        )

    def health(self) -> HealthReport:
        """What `/-/health` answers: overall status, every adapter, the channel layer, HTTP."""
        adapters: dict[str, AdapterReport] = {}
        for running in self._adapters:
            health = running.health()
            adapters[running.name] = {
                "protocol": running.adapter.protocol,
                "status": health.status,
                "detail": health.detail,
            }
        layer: LayerReport | None = None
        if self._layer_probe is not None:
            layer = self._layer_probe.report()
        status = overall_status(adapters, self._stopping, layer["status"] if layer else "ok")
        return {
            "status": status,
            "live": is_live(status),
            "ready": is_ready(status),
            "adapters": adapters,
            "channel_layer": layer,
            "http": "stopping" if self._stopping else "ok",
        }

    async def _wait_for_stop(self) -> None:
        """Until a signal or stop(); also ends if uvicorn stops on its own."""
        stop_waiter = asyncio.create_task(self._stop.wait())
        waiters: list[asyncio.Future[Any]] = [stop_waiter]
        if self._web is not None and self._web.task is not None:
            waiters.append(self._web.task)
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        stop_waiter.cancel()
        if not self._stop.is_set():
            logger.error("The HTTP server stopped unexpectedly; stopping the gateway.")

    async def _drain(self) -> bool:
        """Stop every component concurrently, bounded by SHUTDOWN_TIMEOUT; True when clean."""
        self._stopping = True
        if self._layer_probe is not None:
            await self._layer_probe.stop()
        timeout = self.settings.shutdown_timeout
        logger.info("Stopping: draining for up to %.1f seconds.", timeout)
        http = asyncio.create_task(self._stop_http()) if self._web is not None else None
        stops = [
            asyncio.create_task(self._stop_adapter(a, timeout, http if a.serves_http else None))
            for a in self._adapters
        ]
        if http is not None:
            stops.append(http)
        self._draining = stops
        if not stops:
            return True
        _, pending = await asyncio.wait(stops, timeout=timeout + STOP_GRACE)
        for task in pending:
            task.cancel()
        results = await asyncio.gather(*stops, return_exceptions=True)
        return not pending and all(result is True for result in results) and not self._forced

    async def _stop_http(self) -> bool:
        assert self._web is not None
        try:
            await self._web.stop()
        except Exception:
            logger.exception("The HTTP server failed while stopping.")
            return False
        return True

    async def _stop_adapter(
        self, running: _RunningAdapter, timeout: float, http: asyncio.Task[bool] | None = None
    ) -> bool:
        # Adapters that failed or were cancelled in start() get stop() too: they may hold sockets.
        if http is not None:
            # Its webhooks come in through HTTP: a request the HTTP server still drains is
            # handled by the running adapter, never refused by a stopped one after its body
            # was read. The adapter then drains in what is left of the timeout.
            begun = asyncio.get_running_loop().time()
            await asyncio.wait([http])
            timeout = max(0.0, timeout - (asyncio.get_running_loop().time() - begun))
        try:
            await running.adapter.stop(timeout)
        except Exception:
            logger.exception("Adapter %r failed while stopping.", running.name)
            return False
        finally:
            running.phase = "stopped"
        return True

    def _force(self) -> None:
        if self._forced:
            return
        logger.warning("Second stop signal: exiting without waiting for drains.")
        self._forced = True
        if self._web is not None:
            self._web.force()
        for task in self._draining:
            task.cancel()


def _default_channel_layer() -> InMemoryChannelLayer | None:
    """With CHANNEL_LAYERS unset, the process gets the in-memory layer as its "default"."""
    if channel_layers.configs or DEFAULT_CHANNEL_LAYER in channel_layers.backends:
        return None
    layer = InMemoryChannelLayer()
    channel_layers.set(DEFAULT_CHANNEL_LAYER, layer)
    logger.warning(
        "CHANNEL_LAYERS is not set: using the in-memory channel layer, which reaches"
        " consumers of this process only (set CHANNEL_LAYERS to a Redis layer for several)."
    )
    return layer


def settle_heap() -> None:
    """Freeze what start-up built and collect young objects less often: shorter, rarer pauses.

    Django, the application and the adapters leave tens of thousands of long-lived objects that
    every full collection would walk again; `gc.freeze` moves them out of its reach. The events'
    own objects are freed by reference counting, not by the collector, so a higher gen0
    threshold costs little memory and stops the collections that events in flight alone set
    off. A threshold the process set itself (not CPython's default) is left alone.
    """
    gc.collect()
    gc.freeze()
    gen0, gen1, gen2 = gc.get_threshold()
    if gen0 == DEFAULT_GEN0_THRESHOLD:
        gc.set_threshold(SETTLED_GEN0_THRESHOLD, gen1, gen2)


def _announce(listeners: list[Listener]) -> None:
    # These lines are an interface: scripts and tests parse them from stdout.
    lines = [f"gateway: {item.protocol} listening on {item.address}\n" for item in listeners]
    sys.stdout.write("".join(lines) + "gateway: ready\n")
    sys.stdout.flush()
    for item in listeners:
        logger.info("%s listening on %s", item.protocol, item.address)


def _install_signal_handlers(handler: Callable[[], None]) -> list[signal.Signals]:
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, handler)
        except (NotImplementedError, RuntimeError, ValueError):
            # Not the main thread, or a platform without loop signal handlers.
            continue
        installed.append(sig)
    return installed


def _remove_signal_handlers(signals: list[signal.Signals]) -> None:
    loop = asyncio.get_running_loop()
    for sig in signals:
        loop.remove_signal_handler(sig)


def loop_factory(loop: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop's loop when installed and LOOP allows it, else asyncio's."""
    if loop != "asyncio" and importlib.util.find_spec("uvloop") is not None:
        import uvloop

        return uvloop.new_event_loop
    return asyncio.new_event_loop


def _adapters_wait_on_threads() -> bool:
    """Whether a `database_sync_to_async` call is pending (`SYNC_THREADS_BUSY` applies)."""
    return thread_calls() > 0
