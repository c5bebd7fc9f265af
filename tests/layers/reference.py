"""Django Channels as the reference in parametrized tests: ours and theirs, the same calls."""

from __future__ import annotations

import importlib
import sys
from typing import Any

import pytest

#: Parametrize over these; `implementation` turns each into the module under test.
IMPLEMENTATIONS = ["gateway", "channels"]


def import_reference(module: str) -> Any:
    """Import a Channels module, or skip when Channels is not installed.

    Channels' modules leave sys.modules again afterwards, so tests that check that our code
    never imports Channels stay true whatever ran before them.
    """
    before = set(sys.modules)
    try:
        pytest.importorskip("channels")
        return importlib.import_module(module)
    finally:
        for name in set(sys.modules) - before:
            if name.split(".")[0] == "channels":
                del sys.modules[name]
