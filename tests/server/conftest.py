from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.process import GatewayProcess, spawn, wait_ready


@pytest.fixture
def gateway_process(tmp_path: Path) -> Iterator[GatewayProcess]:
    """`gateway run tests.server.e2e_app:application --port 0`, ready, killed afterwards."""
    process = spawn(tmp_path)
    try:
        assert wait_ready(process), process.stderr()
        yield process
    finally:
        process.kill()
