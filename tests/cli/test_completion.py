"""`reconciler completion bash` is generated from the parser: sourced in bash, it completes commands and flags."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DRIVER = """
source "$1"
complete_words() {
  COMP_WORDS=("$@"); COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 )); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
  COMPREPLY=(); _shtab_reconciler; printf '%s\\n' "${COMPREPLY[@]}"; echo ---
}
complete_words reconciler sh
complete_words reconciler pl
complete_words reconciler plan --no-
complete_words reconciler apply --auto
"""


def script(shell: str) -> str:
    done = subprocess.run([sys.executable, "-m", "reconciler", "completion", shell],
                          capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_bash_completion_completes_commands_and_flags(tmp_path: Path) -> None:
    bash = shutil.which("bash")
    if bash is None:
        pytest.fail("bash is needed for this test")
    (tmp_path / "completion.bash").write_text(script("bash"))
    (tmp_path / "driver.bash").write_text(DRIVER)
    done = subprocess.run([bash, str(tmp_path / "driver.bash"), str(tmp_path / "completion.bash")],
                          capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    answers = [set(block.split()) for block in done.stdout.split("---")[:4]]
    assert answers == [{"show"}, {"plan"}, {"--no-refresh", "--no-color", "--no-rollout"}, {"--auto-approve"}]


def test_zsh_completion_names_every_command() -> None:
    out = script("zsh")
    assert out.startswith("#compdef reconciler")
    for command in ("plan", "apply", "show", "schema", "completion"):
        assert command in out
