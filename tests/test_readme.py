"""The README stays true to the code: every setting the program reads and every command it has is documented."""

from __future__ import annotations

import re
from pathlib import Path

from reconciler.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_every_environment_variable_the_program_reads_is_in_the_readme() -> None:
    read = set()
    for path in (ROOT / "reconciler").rglob("*.py"):
        read |= set(re.findall(r"\"((?:RECONCILER|DTMA|BACKEND)_[A-Z_]+)\"", path.read_text()))
    assert read, "no settings found: the pattern no longer matches how settings are read"
    assert sorted(v for v in read if f"`{v}`" not in README) == []


def test_every_command_is_in_the_readme_table_and_no_placeholder_is_left() -> None:
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices  # type: ignore[union-attr]
    assert commands is not None
    assert sorted(c for c in commands if f"| `reconciler {c}" not in README) == []
    assert not re.search(r"\b[A-Z]+_SECTION\b", README)


def readme_test_command() -> str:
    section = README.split("## Run the tests", 1)[1]
    block = re.search(r"```sh\n(.*?)\n```", section, re.S)
    assert block is not None, "the Run the tests section has no sh block"
    lines = [line for line in block.group(1).splitlines() if line.strip() and not line.startswith("#")]
    assert len(lines) == 1, lines
    return lines[0]


def test_ci_runs_the_readme_test_command_as_written_without_activating_anything() -> None:
    command = readme_test_command()
    assert "pytest" in command and ".venv/bin/" in command  # it runs through the project's venv, not PATH
    ci = (ROOT / ".ci" / "run").read_text()
    assert any(line.startswith(command) for line in ci.splitlines())  # a line of its own, not a comment
    assert not re.search(r"^\s*(source|\.)\s+\S*activate", ci, re.M)
