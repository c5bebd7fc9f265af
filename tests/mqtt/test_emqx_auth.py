"""EMQX's HTTP authentication and authorization, served by the gateway from Django's devices.

The requests are those EMQX 5 sends with the body templates its documentation shows
(``{"username": "${username}", "password": "${password}", "clientid": "${clientid}"}`` for
authentication; ``username``, ``clientid``, ``topic``, ``action``, ``qos`` for authorization),
posted to a gateway started in the test, on its own HTTP server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from django_app.models.devices import Device, DeviceCredential
from gateway.conf import GatewaySettings
from gateway.db import database_sync_to_async
from gateway.metrics import registry
from gateway.passwords import hashing
from gateway.server import Gateway
from gateway.types import Receive, Scope, Send
from protocol_adapters.mqtt.emqx_auth import EmqxAuth
from tests.mqtt.device_support import costly_hashing, make_device

pytestmark = [pytest.mark.django_db(transaction=True)]
__all__ = ["costly_hashing"]  # the fixture, imported for pytest

SECRET = "a-shared-secret-for-emqx-tests"
AUTH = {"authorization": f"Bearer {SECRET}"}
WAIT = 30.0


async def root(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        raise ValueError("no lifespan")
    await send({"type": "http.response.start", "status": 404, "headers": []})
    await send({"type": "http.response.body", "body": b""})


@pytest.fixture
async def gateway(request: pytest.FixtureRequest) -> AsyncIterator[httpx.AsyncClient]:
    """A gateway serving EMQX's endpoints; a client for it, the secret not set."""
    options = {"SECRET": SECRET, **getattr(request, "param", {})}
    assert EmqxAuth.check_options(options) == []
    adapter = {"BACKEND": "protocol_adapters.mqtt.EmqxAuth", "OPTIONS": options}
    settings = GatewaySettings({"ADAPTERS": {"emqx": adapter}, "LOOP": "asyncio"})
    server = Gateway(root, settings=settings, host="127.0.0.1", port=0)
    ready = asyncio.Event()
    serving = asyncio.create_task(server.serve(ready))
    await asyncio.wait_for(ready.wait(), WAIT)
    try:
        async with httpx.AsyncClient(base_url=server.listeners[0].address) as client:
            yield client
    finally:
        server.stop()
        assert await asyncio.wait_for(serving, WAIT) == 0


@pytest.fixture
async def devices() -> None:
    await make_device("pump-1", "secret-1")
    await make_device("fleet-1", "secret-2", ["fleet/{device_id}/#", "fleet/+/status"])
    await database_sync_to_async(_device_without_credential)()


def _device_without_credential() -> None:
    Device.objects.create(device_id="retired-1")


async def authn(client: httpx.AsyncClient, username: str, password: str, **extra: Any) -> Any:
    body = {"username": username, "password": password, "clientid": username, **extra}
    answer = await client.post("/mqtt/emqx/authn/", json=body, headers=AUTH)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    return answer.json()


async def authz(client: httpx.AsyncClient, username: str, action: str, topic: str) -> str:
    body = {"username": username, "clientid": username, "topic": topic, "action": action,
            "qos": 1}  # fmt: skip
    answer = await client.post("/mqtt/emqx/authz/", json=body, headers=AUTH)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["result"])


@pytest.mark.usefixtures("devices")
async def test_logins_are_allowed_denied_or_ignored(gateway: httpx.AsyncClient) -> None:
    assert await authn(gateway, "pump-1", "secret-1") == {"result": "allow", "is_superuser": False}
    assert (await authn(gateway, "pump-1", "wrong"))["result"] == "deny"
    assert (await authn(gateway, "retired-1", "anything"))["result"] == "deny"
    assert (await authn(gateway, "no-such-device", "secret-1"))["result"] == "ignore"
    assert (await authn(gateway, "", ""))["result"] == "ignore"


@pytest.mark.usefixtures("devices")
async def test_publish_and_subscribe_within_the_devices_topics(gateway: httpx.AsyncClient) -> None:
    assert await authz(gateway, "pump-1", "publish", "devices/pump-1/telemetry") == "allow"
    assert await authz(gateway, "pump-1", "publish", "devices/pump-2/telemetry") == "deny"
    assert await authz(gateway, "pump-1", "subscribe", "devices/pump-1/#") == "allow"
    assert await authz(gateway, "pump-1", "subscribe", "devices/+/commands") == "deny"
    assert await authz(gateway, "pump-1", "subscribe", "$share/g/devices/pump-1/#") == "allow"
    assert await authz(gateway, "fleet-1", "subscribe", "fleet/+/status") == "allow"
    assert await authz(gateway, "fleet-1", "subscribe", "fleet/#") == "deny"
    assert await authz(gateway, "fleet-1", "publish", "devices/fleet-1/x") == "deny"
    assert await authz(gateway, "someone-else", "publish", "devices/pump-1/x") == "ignore"


@pytest.mark.usefixtures("devices")
async def test_requests_without_the_secret_are_refused(gateway: httpx.AsyncClient) -> None:
    body = {"username": "pump-1", "password": "secret-1"}
    assert (await gateway.post("/mqtt/emqx/authn/", json=body)).status_code == 401
    wrong = {"authorization": "Bearer not-the-secret"}
    answer = await gateway.post("/mqtt/emqx/authz/", json=body, headers=wrong)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"


async def test_what_is_not_emqx_s_request_gets_400(
    gateway: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    not_json = await gateway.post("/mqtt/emqx/authn/", content=b"{", headers=AUTH)
    no_topic = await gateway.post("/mqtt/emqx/authz/", json={"username": "x"}, headers=AUTH)
    body = {"username": "x", "topic": "a", "action": "delete"}
    bad_action = await gateway.post("/mqtt/emqx/authz/", json=body, headers=AUTH)
    assert [not_json.status_code, no_topic.status_code, bad_action.status_code] == [400] * 3
    assert "refused 400" in caplog.text


@pytest.mark.usefixtures("devices")
async def test_a_form_encoded_request_is_read_too(gateway: httpx.AsyncClient) -> None:
    form = {"username": "pump-1", "password": "secret-1"}
    answer = await gateway.post("/mqtt/emqx/authn/", data=form, headers=AUTH)
    assert answer.json()["result"] == "allow"


@pytest.mark.usefixtures("devices")
@pytest.mark.parametrize("gateway", [{"CACHE_TTL": 0.3}], indirect=True)
async def test_answers_come_from_the_cache_for_a_bounded_time(gateway: httpx.AsyncClient) -> None:
    await authn(gateway, "pump-1", "secret-1")  # Django's password hash runs once
    hashed = hashing.done
    for _ in range(20):
        assert (await authn(gateway, "pump-1", "secret-1"))["result"] == "allow"
    assert hashing.done == hashed  # answered from the cache: no password checked again
    await database_sync_to_async(_drop_credential)("pump-1")
    assert (await authn(gateway, "pump-1", "secret-1"))["result"] == "allow"  # still cached
    await asyncio.sleep(0.4)
    assert (await authn(gateway, "pump-1", "secret-1"))["result"] == "deny"


def _drop_credential(device_id: str) -> None:
    DeviceCredential.objects.filter(device__device_id=device_id).delete()


def test_the_secret_is_required() -> None:
    assert EmqxAuth.check_options({}) == [
        'OPTIONS["SECRET"] is required (use the environment)'
    ]  # fmt: skip
    assert EmqxAuth.check_options({"SECRET": "short"})[0].startswith('OPTIONS["SECRET"] must be')


FAILING = {"LOGINS": {"MAX_FAILURES": 2}, "CACHE_TTL": 0}


@pytest.mark.usefixtures("devices")
@pytest.mark.parametrize("gateway", [FAILING], indirect=True)
async def test_an_address_past_max_failures_is_denied_unchecked(gateway: httpx.AsyncClient) -> None:
    for n in range(2):
        assert (await authn(gateway, "pump-1", f"guess-{n}", peerhost="10.1.2.3"))[
            "result"
        ] == "deny"
    hashed = hashing.done
    assert (await authn(gateway, "pump-1", "secret-1", peerhost="10.1.2.3"))["result"] == "deny"
    assert hashing.done == hashed
    assert (await authn(gateway, "pump-1", "secret-1", peerhost="10.1.2.4"))["result"] == "allow"
    for n in range(2):  # without a peerhost, the username is counted
        assert (await authn(gateway, "fleet-1", f"guess-{n}"))["result"] == "deny"
    assert (await authn(gateway, "fleet-1", "secret-2"))["result"] == "deny"
    assert hashing.done == hashed + 3


BUSY = {"LOGINS": {"CONCURRENCY": 1, "MAX_PER_ADDRESS": 1}, "CACHE_TTL": 0}


@pytest.mark.usefixtures("costly_hashing", "devices")
@pytest.mark.parametrize("gateway", [BUSY], indirect=True)
async def test_logins_past_the_gate_s_bounds_get_503(gateway: httpx.AsyncClient) -> None:
    body = {"username": "pump-1", "password": "guess", "peerhost": "10.1.2.3"}
    overloaded = registry.get("http", "overloaded")
    answers = await asyncio.gather(
        *(gateway.post("/mqtt/emqx/authn/", json=body, headers=AUTH) for _ in range(5))
    )
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses[0] == 200, statuses
    assert statuses[-1] == 503, statuses
    assert registry.get("http", "overloaded") - overloaded == statuses.count(503)
