from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from asgiref.testing import ApplicationCommunicator

from gateway.health import (
    EventCounter,
    HealthEndpoints,
    HealthReport,
    overall_status,
    ready_path,
)
from gateway.layer_health import LayerProbe
from gateway.layers.memory import InMemoryChannelLayer
from gateway.metrics import MetricsRegistry
from gateway.types import ASGIApp, Message, Receive, Scope, Send


async def plain_text(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"from the app"})


def report(status: str = "ok") -> HealthReport:
    adapters: Any = {"lines": {"protocol": "line", "status": "ok", "detail": ""}}
    return {"status": status, "adapters": adapters, "http": "ok"}  # type: ignore[typeddict-item]


def http_scope(path: str, method: str = "GET", root_path: str = "") -> Scope:
    return {"type": "http", "method": method, "path": path, "root_path": root_path, "headers": []}


async def get(app: ASGIApp, scope: Scope) -> tuple[int, dict[bytes, bytes], bytes]:
    communicator = ApplicationCommunicator(app, scope)
    await communicator.send_input({"type": "http.request", "body": b""})
    start = await communicator.receive_output(2)
    body = await communicator.receive_output(2)
    await communicator.wait(2)
    return start["status"], dict(start["headers"]), body["body"]


def endpoints(status: str = "ok", metrics: MetricsRegistry | None = None) -> HealthEndpoints:
    return HealthEndpoints(
        plain_text,
        report=lambda: report(status),
        health_path="/-/health",
        metrics_path="/-/metrics",
        metrics=metrics or MetricsRegistry(),
    )


async def test_health_answers_json() -> None:
    status, headers, body = await get(endpoints(), http_scope("/-/health"))
    assert status == 200
    assert headers[b"content-type"] == b"application/json"
    assert json.loads(body) == report()


async def test_health_is_503_when_down() -> None:
    status, _, body = await get(endpoints("down"), http_scope("/-/health"))
    assert status == 503
    assert json.loads(body)["status"] == "down"


@pytest.mark.parametrize(
    ("status", "live", "ready"), [("ok", 200, 200), ("degraded", 200, 503), ("down", 503, 503)]
)
async def test_liveness_fails_when_down_and_readiness_unless_ok(
    status: str, live: int, ready: int
) -> None:
    assert (await get(endpoints(status), http_scope("/-/health")))[0] == live
    code, _, body = await get(endpoints(status), http_scope("/-/health/ready"))
    assert code == ready
    assert json.loads(body)["status"] == status


async def test_readiness_lives_under_the_health_path() -> None:
    assert ready_path("/-/health") == "/-/health/ready"
    assert ready_path("/healthz/") == "/healthz/ready"
    assert ready_path(None) is None
    status, _, _ = await get(endpoints(), http_scope("/api/-/health/ready", root_path="/api"))
    assert status == 200


def test_an_in_memory_layer_is_not_probed() -> None:
    report = LayerProbe(InMemoryChannelLayer()).report()
    assert report == {
        "backend": "gateway.layers.memory.InMemoryChannelLayer",
        "status": "ok",
        "detail": "not probed",
    }


async def test_metrics_answers_prometheus_text() -> None:
    metrics = MetricsRegistry()
    metrics.inc("mqtt", "handled", 3)
    status, headers, body = await get(endpoints(metrics=metrics), http_scope("/-/metrics"))
    assert status == 200
    assert headers[b"content-type"] == b"text/plain; version=0.0.4; charset=utf-8"
    assert 'gateway_events_handled_total{protocol="mqtt"} 3' in body.decode()


async def test_metrics_count_the_running_tasks() -> None:
    metrics = MetricsRegistry()
    extra = [asyncio.create_task(asyncio.sleep(10)) for _ in range(5)]
    try:
        _, _, body = await get(endpoints(metrics=metrics), http_scope("/-/metrics"))
    finally:
        for task in extra:
            task.cancel()
    line = next(li for li in body.decode().splitlines() if li.startswith("gateway_asyncio_tasks"))
    assert line.startswith('gateway_asyncio_tasks{protocol="process"} ')
    assert int(line.rsplit(" ", 1)[1]) >= 6  # the five above and this test's own


async def test_other_paths_and_disabled_endpoints_reach_the_app() -> None:
    disabled = HealthEndpoints(plain_text, report=report, health_path=None, metrics_path=None)
    assert (await get(endpoints(), http_scope("/hello/")))[2] == b"from the app"
    assert (await get(disabled, http_scope("/-/health")))[2] == b"from the app"


async def test_endpoints_live_under_the_root_path() -> None:
    status, _, body = await get(endpoints(), http_scope("/api/-/health", root_path="/api"))
    assert status == 200
    assert json.loads(body)["http"] == "ok"


async def test_other_methods_get_405() -> None:
    status, headers, _ = await get(endpoints(), http_scope("/-/health", method="POST"))
    assert status == 405
    assert headers[b"allow"] == b"GET, HEAD"


def test_overall_status() -> None:
    def adapters(*statuses: str) -> Any:
        return {
            str(i): {"protocol": "x", "status": s, "detail": ""} for i, s in enumerate(statuses)
        }

    assert overall_status(adapters(), stopping=False) == "ok"
    assert overall_status(adapters("ok", "ok"), stopping=False) == "ok"
    assert overall_status(adapters("ok", "degraded"), stopping=False) == "degraded"
    assert overall_status(adapters("starting"), stopping=False) == "degraded"
    assert overall_status(adapters("ok", "down"), stopping=False) == "down"
    assert overall_status(adapters("stopped"), stopping=False) == "down"
    assert overall_status(adapters("ok"), stopping=True) == "down"
    assert overall_status(adapters("ok"), stopping=False, layer="degraded") == "degraded"
    assert overall_status(adapters(), stopping=False, layer="degraded") == "degraded"
    assert overall_status(adapters("down"), stopping=False, layer="degraded") == "down"


async def test_http_events_are_counted() -> None:
    metrics = MetricsRegistry()

    async def failing(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("view failed")

    await get(EventCounter(plain_text, metrics), http_scope("/"))
    communicator = ApplicationCommunicator(EventCounter(failing, metrics), http_scope("/"))
    await communicator.send_input({"type": "http.request", "body": b""})
    with pytest.raises(RuntimeError, match="view failed"):
        await communicator.wait(2)
    counts = [metrics.get("http", name) for name in ("received", "handled", "failed")]
    assert counts == [2, 1, 1]


async def websocket_outputs(app: ASGIApp, metrics: MetricsRegistry) -> list[Message]:
    communicator = ApplicationCommunicator(EventCounter(app, metrics), {"type": "websocket"})
    await communicator.send_input({"type": "websocket.connect"})
    await communicator.send_input({"type": "websocket.receive", "text": "hi"})
    with pytest.raises(RuntimeError, match="boom"):
        await communicator.wait(2)
    # receive_output() would re-raise the app's exception; read what it sent directly.
    outputs = []
    while not communicator.output_queue.empty():
        outputs.append(communicator.output_queue.get_nowait())
    return outputs


async def test_websocket_raising_after_accept_is_closed_with_1011() -> None:
    metrics = MetricsRegistry()

    async def boom(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await receive()
        raise RuntimeError("boom")

    outputs = await websocket_outputs(boom, metrics)
    assert outputs == [{"type": "websocket.accept"}, {"type": "websocket.close", "code": 1011}]
    assert [metrics.get("websocket", n) for n in ("received", "handled", "failed")] == [1, 0, 1]


async def test_websocket_raising_before_accept_or_after_close_gets_no_extra_close() -> None:
    async def before_accept(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        raise RuntimeError("boom")

    async def after_close(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 4000})
        raise RuntimeError("boom")

    assert await websocket_outputs(before_accept, MetricsRegistry()) == []
    outputs = await websocket_outputs(after_close, MetricsRegistry())
    assert outputs[-1] == {"type": "websocket.close", "code": 4000}


async def test_other_scope_types_pass_through_uncounted() -> None:
    metrics = MetricsRegistry()
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    await EventCounter(app, metrics)({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    assert seen == ["lifespan"]
    assert metrics.protocols() == []
