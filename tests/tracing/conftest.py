from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.consumers.support import CountingLayer, counting_layer

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """The SDK's in-memory exporter behind the process's tracer provider, emptied per test.

    Tracing is on for the test only: the tests that run after it see the gateway untraced.
    """
    pytest.importorskip("opentelemetry.sdk")
    from gateway import tracing
    from tests.tracing.support import recording_provider

    monkeypatch.setattr(tracing, "tracer", tracing.tracer)  # restored at teardown
    provider, exporter = recording_provider()
    assert tracing.configure(provider)
    exporter.clear()
    yield exporter
    exporter.clear()


@pytest.fixture
def layer() -> Iterator[CountingLayer]:
    """A fresh in-memory layer configured as the default channel layer."""
    with counting_layer() as layer:
        yield layer
