"""Runs `tests/postgres/` against a throw-away PostgreSQL server, in a pytest of its own.

The rest of the suite keeps its in-memory SQLite database; switching the default connection
of a running session to another engine and back is not something Django supports, so the
PostgreSQL tests get a process (and settings module) of their own.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.postgres import postgres_bin_dir_or_skip
from tests.postgres.conftest import SETTINGS

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
RUN_TIMEOUT = 280.0  # generous: only there to turn a hang into a failure


@pytest.mark.timeout(300)
def test_postgres_suite_passes() -> None:
    postgres_bin_dir_or_skip()
    argv = [
        sys.executable, "-m", "pytest", "tests/postgres",
        f"--ds={SETTINGS}", "-q", "-rfEs", "-p", "no:cacheprovider",
    ]  # fmt: skip
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": SETTINGS}
    done = subprocess.run(
        argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False
    )
    output = done.stdout + done.stderr
    summary = output.strip().splitlines()[-1] if output.strip() else ""
    assert done.returncode == 0, output
    assert re.search(r"\b\d+ passed\b", summary), output
    # Everything in there must run: a skip means the PostgreSQL guarantees went untested.
    assert not re.search(r"skipped|xfailed|deselected", summary), output
