"""Every command of this area documents itself with an example."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("cmd", ["plan", "apply", "status", "journal"])
def test_help_has_an_example(cmd: str) -> None:
    done = subprocess.run([sys.executable, "-m", "reconciler", cmd, "--help"],
                          capture_output=True, text=True, check=False, timeout=30)  # fmt: skip
    assert done.returncode == 0
    assert "example:" in done.stdout and f"reconciler {cmd} " in done.stdout
