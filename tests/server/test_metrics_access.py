"""GATEWAY["METRICS_ACCESS"]: /-/metrics behind a token, users or addresses, on a real server."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from gateway.conf import GatewaySettings
from gateway.conf_checks import validate
from gateway.server import Gateway
from gateway.types import Receive, Scope, Send


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"from the app"})


@asynccontextmanager
async def metrics_url(access: Any) -> AsyncIterator[str]:
    """A running Gateway (HTTP only, on a free port) with METRICS_ACCESS = `access`."""
    setting = {"HTTP": {"PORT": 0}, "SHUTDOWN_TIMEOUT": 2, "METRICS_ACCESS": access}
    gateway = Gateway(app, settings=GatewaySettings(setting))
    ready = asyncio.Event()
    task = asyncio.create_task(gateway.serve(ready))
    await asyncio.wait_for(ready.wait(), 30)
    url = next(item.address for item in gateway.listeners if item.protocol == "http")
    try:
        yield url + "/-/metrics"
    finally:
        gateway.stop()
        assert await asyncio.wait_for(task, 30) == 0


async def test_open_by_default() -> None:
    async with metrics_url(None) as url, httpx.AsyncClient() as client:
        response = await client.get(url)
    assert response.status_code == 200
    assert "gateway_events_received_total" in response.text


async def test_bearer_token(caplog: pytest.LogCaptureFixture) -> None:
    async with metrics_url({"BEARER_TOKEN": "s3cret"}) as url, httpx.AsyncClient() as client:
        with caplog.at_level(logging.WARNING, "gateway.server"):
            missing = await client.get(url)
        wrong = await client.get(url, headers={"Authorization": "Bearer guess"})
        right = await client.get(url, headers={"Authorization": "Bearer s3cret"})
        other_paths = await client.get(url.replace("/-/metrics", "/"))
    assert (missing.status_code, wrong.status_code, right.status_code) == (401, 401, 200)
    assert missing.headers["www-authenticate"] == 'Bearer realm="metrics"'
    assert "gateway_events" not in missing.text
    assert "/-/metrics refused to ('127.0.0.1'" in caplog.text
    assert other_paths.text == "from the app"


async def test_basic_users() -> None:
    access = {"BASIC_USERS": {"prometheus": "pw"}}
    async with metrics_url(access) as url, httpx.AsyncClient() as client:
        missing = await client.get(url)
        wrong = await client.get(url, auth=("prometheus", "nope"))
        unknown = await client.get(url, auth=("nobody", "pw"))
        garbled = await client.get(url, headers={"Authorization": "Basic !!!"})
        right = await client.get(url, auth=("prometheus", "pw"))
    assert [r.status_code for r in (missing, wrong, unknown, garbled)] == [401] * 4
    assert missing.headers["www-authenticate"] == 'Basic realm="metrics"'
    assert right.status_code == 200


async def test_address_allow_list_alone_and_with_a_token() -> None:
    async with metrics_url({"ALLOW": ["10.0.0.0/8"]}) as url, httpx.AsyncClient() as client:
        assert (await client.get(url)).status_code == 403
    async with metrics_url({"ALLOW": ["127.0.0.1", "::1"]}) as url, httpx.AsyncClient() as client:
        assert (await client.get(url)).status_code == 200
    both = {"ALLOW": ["127.0.0.0/8"], "BEARER_TOKEN": "t"}
    async with metrics_url(both) as url, httpx.AsyncClient() as client:
        assert (await client.get(url)).status_code == 401  # every part given must pass
        assert (await client.get(url, headers={"Authorization": "Bearer t"})).status_code == 200


def test_mistakes_are_named_without_the_secrets() -> None:
    problems = validate(
        {"METRICS_ACCESS": {"ALLOW": "10.0.0.0/8", "BASIC_USERS": {"p": 123}, "TOKEN": "x"}}
    )
    assert [problem.message for problem in problems] == [
        'GATEWAY["METRICS_ACCESS"]["TOKEN"] is not a known key (ALLOW, BEARER_TOKEN, BASIC_USERS)',
        'GATEWAY["METRICS_ACCESS"]["ALLOW"] must be a list of IP addresses or networks',
        'GATEWAY["METRICS_ACCESS"]["BASIC_USERS"] must be a dict of login -> password (str),'
        " or None",
    ]
    assert [p.message for p in validate({"METRICS_ACCESS": "open"})] == [
        'GATEWAY["METRICS_ACCESS"] must be None or a dict of ALLOW, BEARER_TOKEN and BASIC_USERS'
    ]
    assert validate({"METRICS_ACCESS": {"ALLOW": ["10.0.0.0/8", "::1"], "BEARER_TOKEN": "t"}}) == []
