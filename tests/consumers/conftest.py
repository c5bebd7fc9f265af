from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.consumers.support import CountingLayer, counting_layer


@pytest.fixture
def layer() -> Iterator[CountingLayer]:
    """A fresh CountingLayer configured as the default channel layer."""
    with counting_layer() as layer:
        yield layer
