from __future__ import annotations

import pytest

from tests.quickstart.project import Quickstart, follow_quickstart


@pytest.fixture(scope="session")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> Quickstart:
    """A fresh project made as README.md's Quickstart says, up to `gateway run`."""
    return follow_quickstart(tmp_path_factory.mktemp("quickstart"))
