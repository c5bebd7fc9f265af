"""docs/testing.md's examples, run as a pytest session inside the Quickstart's project.

The pytest settings and the test files come from the page's own blocks; the packages it
tells users to install must be the ones this session runs with.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from importlib import metadata

import pytest

from tests.quickstart.project import (
    TESTING_DOCS,
    Quickstart,
    pip_install,
    section_blocks,
    write_file_blocks,
)

pytestmark = pytest.mark.e2e

SESSION_TIMEOUT = 120.0


def test_the_page_names_the_packages_it_needs() -> None:
    packages = shlex.split(pip_install(TESTING_DOCS), comments=True)[2:]
    assert set(packages) >= {"pytest", "pytest-asyncio", "pytest-django"}
    for package in packages:
        assert metadata.version(package)


def test_the_examples_pass_in_the_quickstart_project(quickstart: Quickstart) -> None:
    blocks = section_blocks(TESTING_DOCS)
    written = write_file_blocks(quickstart.directory, blocks)
    assert {path.name for path in written} >= {"pyproject.toml", "test_websocket.py"}
    expected = sum(len(re.findall(r"^async def test_", block.text, re.M)) for block in blocks)
    result = subprocess.run(
        ["bash", "-c", "pytest -q -p no:cacheprovider"],
        cwd=quickstart.directory,
        env=quickstart.env,
        capture_output=True,
        text=True,
        timeout=SESSION_TIMEOUT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{expected} passed" in result.stdout, result.stdout
    assert "warning" not in result.stdout.lower(), result.stdout
