"""`gateway run` as a subprocess, talked to over real sockets."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedError

from gateway.conf import DEFAULTS
from tests.server.process import GatewayProcess, gateway_env, spawn, wait_ready

pytestmark = pytest.mark.e2e

WAIT = 30.0  # generous bound, only to avoid hanging


async def eventually(condition: Callable[[], bool]) -> bool:
    """Poll `condition` until it holds or WAIT seconds passed."""
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


def metric(text: str, name: str, protocol: str) -> int:
    prefix = f'gateway_events_{name}_total{{protocol="{protocol}"}} '
    return next(
        (int(line.removeprefix(prefix)) for line in text.splitlines() if line.startswith(prefix)), 0
    )


async def line_exchange(process: GatewayProcess, *lines: str) -> list[str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", process.line_port)
    answers = []
    for line in lines:
        writer.write(line.encode() + b"\n")
        answers.append((await asyncio.wait_for(reader.readline(), WAIT)).decode().rstrip("\n"))
    writer.close()
    await writer.wait_closed()
    return answers


async def test_start_up_lines(gateway_process: GatewayProcess) -> None:
    assert gateway_process.stdout_lines == [
        f"gateway: http listening on {gateway_process.http_url}",
        f"gateway: line listening on 127.0.0.1:{gateway_process.line_port}",
        "gateway: ready",
    ]
    assert gateway_process.http_url.startswith("http://127.0.0.1:")


async def test_django_view_answers(gateway_process: GatewayProcess) -> None:
    async with httpx.AsyncClient(base_url=gateway_process.http_url) as client:
        response = await client.get("/hello/")
    assert response.status_code == 200
    assert response.text == "hello"


async def test_websocket_echo(gateway_process: GatewayProcess) -> None:
    async with connect(gateway_process.ws_url + "/echo/") as websocket:
        await websocket.send("ping")
        assert await websocket.recv() == "ping"
        await websocket.send(b"\x00\x01")
        assert await websocket.recv() == b"\x00\x01"


async def test_the_adapter_serves_its_protocol(gateway_process: GatewayProcess) -> None:
    answers = await line_exchange(gateway_process, "abc", "fail", "again")
    assert answers == ["ABC", "error", "AGAIN"]


async def test_health_and_metrics_follow_traffic(gateway_process: GatewayProcess) -> None:
    async with httpx.AsyncClient(base_url=gateway_process.http_url) as client:
        health = await client.get("/-/health")
        before = (await client.get("/-/metrics")).text
        await client.get("/hello/")
        async with connect(gateway_process.ws_url + "/echo/") as websocket:
            await websocket.send("x")
            await websocket.recv()
        await line_exchange(gateway_process, "a", "fail")

        async def metrics() -> str:
            return (await client.get("/-/metrics")).text

        after = await metrics()
        deadline = time.monotonic() + WAIT  # the echo app returns just after the close
        while metric(after, "handled", "websocket") == 0 and time.monotonic() < deadline:
            after = await metrics()
    assert health.status_code == 200
    assert health.json() == {
        "status": "ok",
        "live": True,
        "ready": True,
        "adapters": {"lines": {"protocol": "line", "status": "ok", "detail": "0 client(s)"}},
        "channel_layer": {
            "backend": "gateway.layers.memory.InMemoryChannelLayer",
            "status": "ok",
            "detail": "not probed",
        },
        "http": "ok",
    }
    assert metric(after, "handled", "http") > metric(before, "handled", "http")
    assert metric(after, "received", "websocket") == metric(before, "received", "websocket") + 1
    assert metric(after, "handled", "websocket") == metric(before, "handled", "websocket") + 1
    assert [metric(after, name, "line") for name in ("received", "handled", "failed")] == [2, 1, 1]


async def test_an_app_raising_after_accept_closes_with_1011(
    gateway_process: GatewayProcess,
) -> None:
    async with connect(gateway_process.ws_url + "/boom/") as websocket:
        await websocket.send("go")
        with pytest.raises(ConnectionClosedError) as closed:
            await websocket.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1011
    assert await eventually(lambda: "RuntimeError: boom after accept" in gateway_process.stderr())
    async with connect(gateway_process.ws_url + "/echo/") as websocket:
        await websocket.send("still here")
        assert await websocket.recv() == "still here"


def handshake(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET /echo/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(4096)
    assert response.startswith(b"HTTP/1.1 101")
    return sock


def masked_text_frame(payload: bytes, first_byte: int = 0x81) -> bytes:
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([first_byte, 0x80 | len(payload)]) + mask + body


def close_code(sock: socket.socket) -> int:
    data = b""
    while len(data) < 4:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    assert data[0] == 0x88, f"expected a close frame, got {data!r}"
    return int(struct.unpack("!H", data[2:4])[0])


@pytest.mark.parametrize(
    "frame",
    [
        masked_text_frame(b"hello", first_byte=0x80 | 0x40 | 0x01),  # RSV1 set, nothing negotiated
        bytes([0x81, 0x05]) + b"hello",  # a client frame without a mask
    ],
    ids=["reserved-bits", "unmasked"],
)
async def test_malformed_frames_are_closed_with_1002(
    gateway_process: GatewayProcess, frame: bytes
) -> None:
    sock = handshake(gateway_process.http_port)
    with sock:
        sock.sendall(frame)
        assert close_code(sock) == 1002
    async with connect(gateway_process.ws_url + "/echo/") as websocket:
        await websocket.send("still here")
        assert await websocket.recv() == "still here"


def markers(tmp_path: Path) -> tuple[str, str]:
    return (tmp_path / "lifespan").read_text(), (tmp_path / "adapter-stopped").read_text()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_a_stop_signal_drains_and_exits_0(
    gateway_process: GatewayProcess, tmp_path: Path, signum: signal.Signals
) -> None:
    async with (
        connect(gateway_process.ws_url + "/echo/") as echo,
        connect(gateway_process.ws_url + "/stubborn/") as stubborn,
    ):
        await echo.send("before")
        assert await echo.recv() == "before"
        gateway_process.proc.send_signal(signum)
        with pytest.raises(ConnectionClosed) as closed:
            await echo.recv()
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1012
        with pytest.raises(ConnectionClosed):
            await stubborn.recv()
        code = await asyncio.to_thread(gateway_process.proc.wait, WAIT)
    assert code == 0, gateway_process.stderr()
    assert markers(tmp_path) == ("startup\nshutdown\n", "stopped lines\n")


@pytest.mark.parametrize(
    ("loop", "switch", "expected"),
    [("asyncio", "0.002", "asyncio"), ("auto", None, "uvloop")],
)
def test_the_loop_setting_picks_the_event_loop(
    tmp_path: Path, loop: str, switch: str | None, expected: str
) -> None:
    env = gateway_env(tmp_path)
    env["GATEWAY_E2E_LOOP"] = loop
    if switch is not None:
        env["GATEWAY_E2E_SWITCH_INTERVAL"] = switch
    process = spawn(tmp_path, env=env)
    try:
        assert wait_ready(process), process.stderr()
        assert httpx.get(process.http_url + "/hello/", timeout=WAIT).text == "hello"
        process.proc.send_signal(signal.SIGTERM)
        assert process.proc.wait(WAIT) == 0, process.stderr()
    finally:
        process.kill()
    assert f"Event loop: {expected}" in process.stderr()
    # SWITCH_INTERVAL is the process's; by default (None) Python's own, 5 ms.
    assert DEFAULTS["SWITCH_INTERVAL"] is None
    interval = float(switch) * 1000 if switch is not None else 5
    assert f"GIL switch interval {interval:g} ms." in process.stderr()


def test_bad_gateway_setting_exits_1_before_listening(tmp_path: Path) -> None:
    for extra in ([], ["--skip-checks"]):
        process = spawn(tmp_path, "--settings", "tests.server.bad_settings", *extra)
        try:
            assert not wait_ready(process)
            assert process.proc.wait(WAIT) == 1
        finally:
            process.kill()
        assert process.stdout_lines == []
        stderr = process.stderr()
        assert """GATEWAY["HTTP"]["PORT"] must be an integer 0-65535, got 'abc'""" in stderr
        assert 'GATEWAY["SHUTDWON_TIMEOUT"] is not a known key' in stderr
        assert not (tmp_path / "lifespan").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "tests.server.e2e_app"], "APP must look like module.path:attribute"),
        (["run", "tests.server.nowhere:application"], "cannot import module"),
        (["run", "tests.server.e2e_app:nothing"], "has no attribute 'nothing'"),
        (["run"], "the following arguments are required: APP"),
        (["run", "tests.server.e2e_app:application", "--port", "70000"], "--port must be 0-65535"),
    ],
)
def test_usage_errors_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    import sys

    process = spawn(tmp_path, *args, command=[sys.executable, "-m", "gateway"])
    try:
        assert process.proc.wait(WAIT) == 2
    finally:
        process.kill()
    assert message in process.stderr()
