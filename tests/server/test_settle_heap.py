"""`settle_heap`: what `gateway run` does to the garbage collector once everything listens."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from gateway.server import DEFAULT_GEN0_THRESHOLD, SETTLED_GEN0_THRESHOLD, settle_heap


@pytest.fixture
def collector() -> Iterator[None]:
    """Give the process its collector back as it was: thresholds, nothing frozen."""
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_start_up_objects_are_frozen_and_young_collections_made_rarer(collector: None) -> None:
    gc.set_threshold(DEFAULT_GEN0_THRESHOLD, 10, 10)
    settle_heap()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (SETTLED_GEN0_THRESHOLD, 10, 10)


def test_a_threshold_the_process_chose_is_kept(collector: None) -> None:
    gc.set_threshold(2_000, 5, 5)
    settle_heap()
    assert gc.get_threshold() == (2_000, 5, 5)
