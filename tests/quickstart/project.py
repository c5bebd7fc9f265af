"""A fresh Django project made the way README.md's Quickstart says, from the README's own text.

The fenced blocks of a Markdown section are the source: a ``python`` (or ``toml``) block
whose first line is ``# path`` is that file, ``# path: add at the end`` is appended to the
file `startproject` made; ``bash`` blocks are the commands, run in a shell whose ``PATH``
starts with this virtualenv's ``bin/``, as after ``source .venv/bin/activate``.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tests.server.process import ROOT, gateway_env

README = ROOT / "README.md"
TESTING_DOCS = ROOT / "docs" / "testing.md"
VENV_BIN = Path(sys.executable).parent
TWILIO_AUTH_TOKEN = "quickstart-test-token"
COMMAND_TIMEOUT = 120.0

# The test's own settings, after the README's: any free port (0: picked at start, printed).
TEST_SETTINGS = """
GATEWAY["HTTP"]["PORT"] = 0
GATEWAY["ADAPTERS"]["mqtt"]["OPTIONS"]["PORT"] = 0
GATEWAY["ADAPTERS"]["smtp"]["OPTIONS"]["PORT"] = 0
"""

_FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
_FILE_HEADER = re.compile(r"^# (?P<path>[\w./-]+\.(?:py|toml))(?P<rest>.*)$")


@dataclass(frozen=True)
class Block:
    """One fenced block: its language and its text."""

    language: str
    text: str

    @property
    def path(self) -> str | None:
        """The file this block is (its first line ``# path``), or None."""
        match = _FILE_HEADER.match(self.text.partition("\n")[0])
        return match["path"] if match else None

    @property
    def appends(self) -> bool:
        """True when the block is to be added at the end of an existing file."""
        match = _FILE_HEADER.match(self.text.partition("\n")[0])
        return match is not None and "add at the end" in match["rest"]

    def commands(self) -> list[str]:
        """The shell commands of a ``bash`` block, continuation lines joined."""
        return [line for line in self.text.replace("\\\n", " ").splitlines() if line.strip()]


def section_blocks(markdown: Path, heading: str | None = None) -> list[Block]:
    """The fenced blocks of `markdown` (of its ``## heading`` section only, when given)."""
    text = markdown.read_text()
    if heading is not None:
        start = text.index(f"\n## {heading}\n")
        end = text.find("\n## ", start + 1)
        text = text[start : end if end != -1 else len(text)]
    return [Block(match[1], match[2]) for match in _FENCE.finditer(text)]


def pip_install(markdown: Path, heading: str | None = None) -> str:
    """The one ``pip install`` command of `markdown` (of its ``## heading`` section)."""
    [command] = [
        command
        for block in section_blocks(markdown, heading)
        if block.language == "bash"
        for command in block.commands()
        if command.startswith("pip install")
    ]
    return command


def user_env(tmp_path: Path) -> dict[str, str]:
    """A user's shell after activating the virtualenv: no settings module, no PYTHONPATH."""
    env = gateway_env(tmp_path)
    for name in ("DJANGO_SETTINGS_MODULE", "PYTHONPATH", "VIRTUAL_ENV"):
        env.pop(name, None)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["TWILIO_AUTH_TOKEN"] = TWILIO_AUTH_TOKEN
    return env


def run_shell(script: str, cwd: Path, env: dict[str, str]) -> str:
    """Run `script` with bash (stopping at the first failure); return its stdout."""
    result = subprocess.run(
        ["bash", "-ec", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
    )
    assert result.returncode == 0, f"{script}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def is_setup_command(command: str) -> bool:
    """Commands the test runs as written: making the project, manage.py commands."""
    first = shlex.split(command, comments=True)[:1]
    return first in (["django-admin"], ["python"])


def write_file_blocks(project: Path, blocks: list[Block]) -> list[Path]:
    """Write (or append) each block that names a file; return the files written."""
    written = []
    for block in blocks:
        if block.path is None:
            continue
        target = project / block.path
        target.parent.mkdir(parents=True, exist_ok=True)
        if block.appends:
            assert target.exists(), f"{block.path} is to be added to, but nothing made it"
            target.write_text(target.read_text() + "\n" + block.text)
        else:
            target.write_text(block.text)
        written.append(target)
    return written


def with_ports(command: str, ports: dict[str, int]) -> list[str]:
    """`command` as argv, the value of each option in `ports` (`-p`, `--port`) replaced."""
    argv = shlex.split(command, comments=True)
    for index, word in enumerate(argv[:-1]):
        if word in ports:
            argv[index + 1] = str(ports[word])
    return argv


@dataclass
class Quickstart:
    """The project the README's Quickstart made, and its commands not run yet."""

    directory: Path
    env: dict[str, str]
    run_command: str = ""
    rungateway_command: str = ""
    try_commands: list[str] = field(default_factory=list)


def follow_quickstart(home: Path) -> Quickstart:
    """Follow README.md's Quickstart in `home`, block by block, up to `gateway run`."""
    project = Quickstart(directory=home, env=user_env(home))
    for block in section_blocks(README, "Quickstart"):
        if block.language == "bash":
            _follow_commands(project, block.commands())
        elif block.path is not None:
            [written] = write_file_blocks(project.directory, [block])
            if written.name == "settings.py":
                written.write_text(written.read_text() + TEST_SETTINGS)
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
