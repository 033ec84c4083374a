"""Start-up imports only what the chosen command needs; the stub lines in ``--help`` match the real ones."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.cli import COMMANDS, build_parser, chosen_command

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
HEAVY = ("asyncio", "psycopg", "sqlite_utils", "prometheus_client", "apscheduler", "jsonschema")

PROBE = """
import json, sys
from reconciler.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def loaded_by(*argv: str) -> tuple[int, set[str]]:
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=60,
                          check=False)  # fmt: skip
    data = json.loads(done.stdout.splitlines()[-1])
    return int(data["code"]), set(data["modules"])


def test_version_imports_no_command_module() -> None:
    code, modules = loaded_by("--version")
    assert code == 0
    assert {m for m in modules if m.startswith("reconciler")} == {"reconciler", "reconciler.cli"}


def test_validate_imports_neither_runtime_nor_adapters_nor_io_libraries() -> None:
    code, modules = loaded_by("validate", str(EXAMPLES))
    assert code == 0
    assert not {m for m in modules if m.startswith(("reconciler.runtime", "reconciler.adapters"))}
    assert not {m for m in modules if m.split(".")[0] in HEAVY}
    # The examples are in the YAML subset the loader reads line by line: PyYAML is not needed.
    assert not {m for m in modules if m.split(".")[0] == "yaml"}


def test_help_lists_every_command_with_its_own_help_line() -> None:
    real = build_parser(full=True)._subparsers._group_actions[0]  # type: ignore[union-attr]
    lines = {a.dest: a.help for a in real._choices_actions}  # type: ignore[attr-defined]
    assert lines == COMMANDS


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["--version"], None),
        (["validate", "m/"], "validate"),
        (["-v", "--log-format", "json", "plan", "m/"], "plan"),
        (["--log-format=json", "apply", "m/"], "apply"),
        (["nosuch"], None),
        ([], None),
    ],
)
def test_chosen_command_finds_the_word_argparse_will_take(argv: list[str], command: str | None) -> None:
    assert chosen_command(argv) == command
