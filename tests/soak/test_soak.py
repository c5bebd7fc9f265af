"""The soak's short version: the demo under mixed load for 3 minutes, RSS, tasks and p99 flat.

The long one is ``benchmarks/soak.py --minutes 60``; the checks are the same (its docstring
defines them), on a smaller load: 100 devices, 15 s between samples, the first 45 s left out.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.soak import Options, run
from benchmarks.soak_load import Rates

pytestmark = [pytest.mark.soak, pytest.mark.e2e]

SHORT = Options(
    minutes=3.0,
    interval=15.0,
    warmup=45.0,
    devices=100,
    mqtt_rate=20.0,
    rates=Rates(smtp=1.0, sms=2.0, notes=4.0, dashboards=5),
)


@pytest.mark.timeout(300)
def test_the_demo_stays_flat_under_mixed_load(tmp_path: Path) -> None:
    rows, checks = run(SHORT, tmp_path / "soak")
    assert len(rows) == 12
    assert all(row["mqtt_p50_ms"] > 0 and row["delivered"] > 0 for row in rows)
    assert all(line.startswith("ok") for line in checks), "\n".join(checks)
    assert (tmp_path / "soak.png").stat().st_size > 0
