"""The layer_factory fixture: every conformance test runs against each channel layer backend."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from gateway.layers import BaseChannelLayer, InMemoryChannelLayer

LayerFactory = Callable[..., BaseChannelLayer]

# Each backend: a builder taking CONFIG keyword arguments. The Redis layer joins this table.
BACKENDS: dict[str, Callable[..., BaseChannelLayer]] = {
    "memory": InMemoryChannelLayer,
}


@pytest.fixture(params=list(BACKENDS), ids=list(BACKENDS))
async def layer_factory(request: pytest.FixtureRequest) -> AsyncIterator[LayerFactory]:
    """Build layers of one backend with the given CONFIG; flush and close them afterwards."""
    build = BACKENDS[request.param]
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
