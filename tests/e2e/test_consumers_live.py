"""Real consumers behind `gateway run`, driven by real WebSocket and HTTP clients."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.server.process import GatewayProcess, spawn, wait_ready

pytestmark = pytest.mark.e2e
APP = "tests.e2e.consumer_app:application"
FANOUT = 200


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    tmp_path = tmp_path_factory.mktemp("consumers")
    process = spawn(tmp_path, command=[sys.executable, "-m", "gateway", "run", APP, "--port", "0"])
    try:
        assert wait_ready(process), process.stderr()
        yield process
    finally:
        process.kill()


async def test_django_view_answers(gateway: GatewayProcess) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.get(gateway.http_url + "/hello/")
    assert response.status_code == 200
    assert response.text == "hello"


async def test_echo_consumer(gateway: GatewayProcess) -> None:
    async with connect(gateway.ws_url + "/ws/echo/") as ws:
        for text in ("one", "two", "ünïcode ✓"):
            await ws.send(text)
            assert await ws.recv() == text


async def _join(url: str) -> ClientConnection:
    ws = await connect(url, open_timeout=30)
    assert json.loads(await ws.recv()) == {"joined": "room-fanout"}
    return ws


async def test_group_send_from_one_connection_reaches_200_others(gateway: GatewayProcess) -> None:
    url = gateway.ws_url + "/ws/room/fanout/"
    sender = await _join(url)
    others = await asyncio.gather(*(_join(url) for _ in range(FANOUT)))
    try:
        await sender.send(json.dumps({"seq": 1, "text": "to everyone"}))
        received = await asyncio.wait_for(
            asyncio.gather(*(ws.recv() for ws in [sender, *others])), timeout=60
        )
        assert [json.loads(r) for r in received] == [{"seq": 1, "text": "to everyone"}] * (
            FANOUT + 1
        )
    finally:
        await asyncio.gather(*(ws.close() for ws in [sender, *others]))


async def test_a_crashing_consumer_closes_1011_and_the_process_serves_on(
    gateway: GatewayProcess,
) -> None:
    assert await _close_code_after(gateway.ws_url + "/ws/crash/", "kaboom") == 1011
    await _wait_for_log(gateway, "consumer crashed on 'kaboom'")
    log = gateway.stderr()
    assert "Traceback (most recent call last)" in log
    await test_echo_consumer(gateway)


async def test_an_unknown_message_type_is_a_clear_error(gateway: GatewayProcess) -> None:
    assert await _close_code_after(gateway.ws_url + "/ws/stray/", "go") == 1011
    await _wait_for_log(gateway, "no.such.handler")
    assert "UnknownMessageType" in gateway.stderr()
    await test_echo_consumer(gateway)


async def test_an_unknown_route_is_a_404_and_logged(gateway: GatewayProcess) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(gateway.ws_url + "/ws/nowhere/"):
            pass
    assert refused.value.response.status_code == 404
    await _wait_for_log(gateway, "No route found for path 'ws/nowhere/'")
    assert "Traceback" not in gateway.stderr().split("ws/nowhere/")[-1]
    await test_echo_consumer(gateway)


async def _close_code_after(url: str, text: str) -> int:
    """Send one frame and return the code of the close frame the server answers with."""
    async with connect(url) as ws:
        await ws.send(text)
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None, "the server sent no close frame"
    return closed.value.rcvd.code


async def _wait_for_log(gateway: GatewayProcess, text: str) -> None:
    async with asyncio.timeout(10):
        while text not in gateway.stderr():
            await asyncio.sleep(0.05)
