from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.quickstart.project import (
    README,
    is_setup_command,
    run_shell,
    section_blocks,
    user_env,
    write_file_blocks,
)

# The test's own settings, after the README's: any free port (0: picked at start, printed).
TEST_SETTINGS = """
GATEWAY["HTTP"]["PORT"] = 0
GATEWAY["ADAPTERS"]["mqtt"]["OPTIONS"]["PORT"] = 0
GATEWAY["ADAPTERS"]["smtp"]["OPTIONS"]["PORT"] = 0
"""


@dataclass
class Quickstart:
    """The project the README's Quickstart made, and its commands not run yet."""

    directory: Path
    env: dict[str, str]
    run_command: str = ""
    rungateway_command: str = ""
    try_commands: list[str] = field(default_factory=list)


@pytest.fixture(scope="session")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> Quickstart:
    """Follow README.md's Quickstart up to `gateway run` in a fresh directory."""
    home = tmp_path_factory.mktemp("quickstart")
    project = Quickstart(directory=home, env=user_env(home))
    for block in section_blocks(README, "Quickstart"):
        if block.language == "bash":
            _follow_commands(project, block.commands())
        elif block.path is not None:
            written = write_file_blocks(project.directory, [block])
            if written[0].name == "settings.py":
                written[0].write_text(written[0].read_text() + TEST_SETTINGS)
    assert project.run_command, "the Quickstart never says `gateway run`"
    return project


def _follow_commands(project: Quickstart, commands: list[str]) -> None:
    setup = []
    for command in commands:
        words = shlex.split(command, comments=True)
        if words[:2] == ["gateway", "run"]:
            project.run_command = shlex.join(words)
            project.rungateway_command = command.partition("# or:")[2].strip()
        elif project.run_command:
            project.try_commands.append(command)
        elif is_setup_command(command):
            setup.append(command)
    if setup:
        # `cd` in a command carries over to the next block, as in the user's shell.
        output = run_shell("\n".join([*setup, "pwd"]), project.directory, project.env)
        project.directory = Path(output.splitlines()[-1])
