"""The layer_factory fixture: every conformance test runs against each channel layer backend."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from gateway.layers import BaseChannelLayer, InMemoryChannelLayer
from gateway.layers.redis import RedisChannelLayer
from tests.integration.redis import (
    RedisCluster,
    RedisServer,
    own_redis_server,
    redis_server,
    running_cluster,
)

__all__ = [
    "LayerFactory",
    "own_redis_server",
    "redis_cluster",
    "redis_layer_config",
    "redis_server",
]


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    """One Redis Cluster of three masters for the whole session (tests use their own prefixes)."""
    with running_cluster(masters=3) as cluster:
        yield cluster


LayerFactory = Callable[..., BaseChannelLayer]


def redis_layer_config(*urls: str, **config: Any) -> dict[str, Any]:
    """CONFIG for a Redis layer in tests: its own key prefix, tiny backoffs."""
    defaults: dict[str, Any] = {
        "hosts": list(urls),
        "prefix": f"test-{secrets.token_hex(4)}",
        "backoff_initial": 0.02,
        "backoff_max": 0.2,
        "unavailable_after": 2.0,
        "block_seconds": 1.0,
    }
    return defaults | config


def _redis_builder(request: pytest.FixtureRequest) -> Callable[..., BaseChannelLayer]:
    server: RedisServer = request.getfixturevalue("redis_server")
    # One prefix per test: layers built by the same test share their channels, as processes do.
    prefix = f"test-{secrets.token_hex(4)}"

    def build(**config: Any) -> BaseChannelLayer:
        return RedisChannelLayer(**redis_layer_config(server.url, prefix=prefix, **config))

    return build


def _cluster_builder(request: pytest.FixtureRequest) -> Callable[..., BaseChannelLayer]:
    cluster: RedisCluster = request.getfixturevalue("redis_cluster")
    prefix = f"test-{secrets.token_hex(4)}"

    def build(**config: Any) -> BaseChannelLayer:
        # One start-up node: the layer learns the others from it.
        options = redis_layer_config(cluster.urls[0], prefix=prefix, cluster=True, **config)
        return RedisChannelLayer(**options)

    return build


# Each backend: a builder taking CONFIG keyword arguments.
BACKENDS: dict[str, Callable[[pytest.FixtureRequest], Callable[..., BaseChannelLayer]]] = {
    "memory": lambda request: InMemoryChannelLayer,
    "redis": _redis_builder,
    "redis-cluster": _cluster_builder,
}


@pytest.fixture(
    params=[
        pytest.param("memory"),
        pytest.param("redis", marks=pytest.mark.integration),
        pytest.param("redis-cluster", marks=pytest.mark.integration),
    ],
)
async def layer_factory(request: pytest.FixtureRequest) -> AsyncIterator[LayerFactory]:
    """Build layers of one backend with the given CONFIG; flush and close them afterwards."""
    build = BACKENDS[request.param](request)
    made: list[BaseChannelLayer] = []

    def factory(**config: Any) -> BaseChannelLayer:
        layer = build(**config)
        made.append(layer)
        return layer

    yield factory
    for layer in made:
        await layer.flush()
        await layer.close()


@pytest.fixture
def layer(layer_factory: LayerFactory) -> BaseChannelLayer:
    """A layer of the current backend with the default CONFIG."""
    return layer_factory()
