"""The Gateway class in the test's own event loop, on real sockets."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.test import override_settings

from gateway.adapters import Listener
from gateway.conf import GatewaySettings
from gateway.layers import get_channel_layer
from gateway.server import Gateway
from gateway.types import Receive, Scope, Send

LINE_ADAPTER = "tests.server.line_adapter.LineAdapter"


class App:
    """Answers HTTP with "hi" and records its lifespan events."""

    def __init__(self, fail_startup: bool = False) -> None:
        self.fail_startup = fail_startup
        self.lifespan: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.run_lifespan(receive, send)
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"hi"})

    async def run_lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            phase = (await receive())["type"].removeprefix("lifespan.")
            self.lifespan.append(phase)
            outcome = "failed" if self.fail_startup else "complete"
            await send({"type": f"lifespan.{phase}.{outcome}"})
            if phase == "shutdown" or self.fail_startup:
                return


def settings(**adapters: dict[str, Any]) -> GatewaySettings:
    return GatewaySettings({"HTTP": {"PORT": 0}, "SHUTDOWN_TIMEOUT": 2, "ADAPTERS": adapters})


def http_url(listeners: list[Listener]) -> str:
    return next(item.address for item in listeners if item.protocol == "http")


async def start(gateway: Gateway) -> asyncio.Task[int]:
    ready = asyncio.Event()
    task = asyncio.create_task(gateway.serve(ready))
    waiter = asyncio.create_task(ready.wait())
    await asyncio.wait([task, waiter], timeout=30, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    assert ready.is_set(), "the gateway did not get ready"
    return task


async def test_serves_until_stopped_then_returns_0(tmp_path: Path, capsys: Any) -> None:
    app = App()
    marker = tmp_path / "stopped"
    lines = {"BACKEND": LINE_ADAPTER, "OPTIONS": {"STOP_MARKER": str(marker)}}
    gateway = Gateway(app, settings=settings(lines=lines))
    task = await start(gateway)
    url = http_url(gateway.listeners)
    async with httpx.AsyncClient() as client:
        assert (await client.get(url + "/")).text == "hi"
        health = (await client.get(url + "/-/health")).json()
    assert health["adapters"]["lines"] == {
        "protocol": "line",
        "status": "ok",
        "detail": "0 client(s)",
    }
    assert app.lifespan == ["startup"]

    gateway.stop()
    assert await asyncio.wait_for(task, 30) == 0
    assert app.lifespan == ["startup", "shutdown"]
    assert marker.read_text() == "stopped lines\n"
    assert gateway.health()["adapters"]["lines"]["status"] == "stopped"
    out = capsys.readouterr().out.splitlines()
    assert out == [f"gateway: http listening on {url}", out[1], "gateway: ready"]
    assert out[1].startswith("gateway: line listening on 127.0.0.1:")
    async with httpx.AsyncClient() as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(url + "/")


async def test_host_and_port_arguments_override_the_settings() -> None:
    gateway = Gateway(
        App(), settings=GatewaySettings({"HTTP": {"PORT": 1}}), host="127.0.0.1", port=0
    )
    task = await start(gateway)
    assert http_url(gateway.listeners).startswith("http://127.0.0.1:")
    assert not http_url(gateway.listeners).endswith(":1")
    gateway.stop()
    assert await asyncio.wait_for(task, 30) == 0


async def test_an_adapter_failing_to_start_stops_everything_and_returns_1(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = App()
    marker = tmp_path / "stopped"
    gateway = Gateway(
        app,
        settings=settings(
            good={"BACKEND": LINE_ADAPTER, "OPTIONS": {"STOP_MARKER": str(marker)}},
            bad={"BACKEND": LINE_ADAPTER, "OPTIONS": {"FAIL_START": True}},
        ),
    )
    with caplog.at_level(logging.ERROR, logger="gateway.server"):
        assert await asyncio.wait_for(gateway.serve(), 30) == 1
    assert "Adapter 'bad'" in caplog.text
    assert "refusing to start, as configured" in caplog.text  # the traceback is logged
    assert marker.read_text() == "stopped good\n"
    assert app.lifespan == ["startup", "shutdown"]
    for listener in gateway.listeners:
        host, port = listener.address.removeprefix("http://").rsplit(":", 1)
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection(host, int(port))


async def test_lifespan_startup_failure_returns_1_before_listening(capsys: Any) -> None:
    gateway = Gateway(App(fail_startup=True), settings=settings())
    assert await asyncio.wait_for(gateway.serve(), 30) == 1
    assert gateway.listeners == []
    assert "gateway: ready" not in capsys.readouterr().out


async def test_bad_settings_return_1_naming_every_setting(caplog: pytest.LogCaptureFixture) -> None:
    bad = GatewaySettings({"HTTP": {"PORT": -1}, "LOOP": "trio"})
    with caplog.at_level(logging.ERROR, logger="gateway.server"):
        assert await Gateway(App(), settings=bad).serve() == 1
    assert 'GATEWAY["HTTP"]["PORT"] must be an integer 0-65535, got -1' in caplog.text
    assert 'GATEWAY["LOOP"] must be one of' in caplog.text


async def test_a_port_in_use_returns_1(caplog: pytest.LogCaptureFixture) -> None:
    first = Gateway(App(), settings=settings())
    task = await start(first)
    port = int(http_url(first.listeners).rsplit(":", 1)[1])
    try:
        with caplog.at_level(logging.ERROR, logger="gateway.server"):
            second = Gateway(App(), settings=settings(), port=port)
            assert await asyncio.wait_for(second.serve(), 30) == 1
        assert f"Cannot listen on 127.0.0.1:{port}" in caplog.text
    finally:
        first.stop()
        assert await asyncio.wait_for(task, 30) == 0


async def test_http_can_be_disabled(capsys: Any) -> None:
    gateway = Gateway(App(), settings=GatewaySettings({"HTTP": {"ENABLED": False}}))
    task = await start(gateway)
    assert gateway.listeners == []
    gateway.stop()
    assert await asyncio.wait_for(task, 30) == 0
    assert capsys.readouterr().out == "gateway: ready\n"


class LayerNameApp(App):
    """Answers HTTP with the class name of the default channel layer."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.run_lifespan(receive, send)
            return
        body = type(get_channel_layer()).__name__.encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})


async def test_without_channel_layers_the_process_uses_the_in_memory_layer_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with override_settings(CHANNEL_LAYERS=None):
        assert get_channel_layer() is None  # Channels' answer outside the gateway
        gateway = Gateway(LayerNameApp(), settings=settings())
        with caplog.at_level(logging.WARNING, logger="gateway.server"):
            task = await start(gateway)
        async with httpx.AsyncClient() as client:
            answer = await client.get(http_url(gateway.listeners) + "/")
        assert answer.text == "InMemoryChannelLayer"
        assert "CHANNEL_LAYERS is not set: using the in-memory channel layer" in caplog.text
        gateway.stop()
        assert await asyncio.wait_for(task, 30) == 0
        assert get_channel_layer() is None


async def test_a_configured_channel_layer_is_kept(caplog: pytest.LogCaptureFixture) -> None:
    config = {"default": {"BACKEND": "gateway.layers.InMemoryChannelLayer"}}
    with override_settings(CHANNEL_LAYERS=config):
        configured = get_channel_layer()
        gateway = Gateway(LayerNameApp(), settings=settings())
        with caplog.at_level(logging.WARNING, logger="gateway.server"):
            task = await start(gateway)
        assert get_channel_layer() is configured
        assert "CHANNEL_LAYERS is not set" not in caplog.text
        gateway.stop()
        assert await asyncio.wait_for(task, 30) == 0
