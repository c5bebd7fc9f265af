"""The Redis layer over TLS (rediss://) against a redis-server that serves TLS only."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from gateway.exceptions import ChannelLayerUnavailable
from gateway.layers.redis import RedisChannelLayer
from tests.integration.redis import RedisServer, running_tls_redis

from .conftest import redis_layer_config
from .helpers import WAIT, receive

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tls_server() -> Iterator[RedisServer]:
    with running_tls_redis() as server:
        yield server


def _ca(server: RedisServer) -> str:
    assert server.tls is not None
    return str(server.tls.ca)


@pytest.fixture
async def made() -> AsyncIterator[list[RedisChannelLayer]]:
    layers: list[RedisChannelLayer] = []
    yield layers
    for layer in layers:
        await layer.close()


def _hosts(server: RedisServer) -> dict[str, list[Any]]:
    """The same TLS host in each of the formats CONFIG accepts."""
    return {
        "url with query": [f"{server.url}?ssl_ca_certs={_ca(server)}"],
        "dict with address": [{"address": server.url, "ssl_ca_certs": _ca(server)}],
    }


@pytest.mark.parametrize("form", ["url with query", "dict with address"])
async def test_send_receive_groups_and_durable_channels_over_tls(
    tls_server: RedisServer, made: list[RedisChannelLayer], form: str
) -> None:
    hosts = _hosts(tls_server)[form]
    config = redis_layer_config(durable=["jobs.*"], hosts=hosts)
    layer, other = RedisChannelLayer(**config), RedisChannelLayer(**config)
    made += [layer, other]
    channel = await layer.new_channel()
    await other.send(channel, {"type": "test.direct", "data": b"\x00\xff"})
    assert await receive(layer, channel) == {"type": "test.direct", "data": b"\x00\xff"}
    await layer.group_add("room", channel)
    await other.group_send("room", {"type": "test.group"})
    assert await receive(layer, channel) == {"type": "test.group"}
    await other.send("jobs.tls", {"type": "test.job"})
    delivery = await asyncio.wait_for(layer.receive_delivery("jobs.tls"), WAIT)
    assert delivery.message == {"type": "test.job"}
    await delivery.ack()
    await layer.flush()


async def test_a_certificate_nobody_vouches_for_is_refused_clearly(
    tls_server: RedisServer, made: list[RedisChannelLayer]
) -> None:
    # No ssl_ca_certs: the system's authorities do not know the test CA.
    layer = RedisChannelLayer(**redis_layer_config(tls_server.url, unavailable_after=0.5))
    made.append(layer)
    with pytest.raises(ChannelLayerUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
        await layer.send("test.channel", {"type": "test.message"})


async def test_verification_can_be_turned_off_explicitly(
    tls_server: RedisServer, made: list[RedisChannelLayer]
) -> None:
    url = f"{tls_server.url}?ssl_cert_reqs=none"
    layer = RedisChannelLayer(**redis_layer_config(url))
    made.append(layer)
    await layer.send("test.channel", {"type": "test.message"})
    assert await receive(layer, "test.channel") == {"type": "test.message"}
    await layer.flush()


async def test_plain_redis_against_a_tls_port_is_unavailable_not_a_hang(
    tls_server: RedisServer, made: list[RedisChannelLayer]
) -> None:
    plain = tls_server.url.replace("rediss://", "redis://")
    layer = RedisChannelLayer(**redis_layer_config(plain, unavailable_after=0.5))
    made.append(layer)
    with pytest.raises(ChannelLayerUnavailable):
        await asyncio.wait_for(layer.send("test.channel", {"type": "test.message"}), WAIT)
