"""`demo --help` shows how to try it; `sim --help` shows how to register the simulated toolboxes."""

from __future__ import annotations

import subprocess
import sys


def _help(cmd: str) -> str:
    done = subprocess.run([sys.executable, "-m", "reconciler", cmd, "--help"],
                          capture_output=True, text=True, check=False, timeout=30)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_demo_help_has_examples_and_says_what_it_leaves_alone() -> None:
    text = _help("demo")
    assert "example:" in text and "reconciler demo --once" in text
    for option in ("--once", "--interval", "--dir", "--listen"):
        assert option in text
    assert "ignores" in text and "RECONCILER_DATABASE_URL" in text


def test_sim_help_explains_registering_toolboxes_with_the_database() -> None:
    text = _help("sim")
    assert "reconciler db add-environment research-toolbox --address 127.0.1.1" in text
    assert "DTMA_PORT" in text and "BACKEND_TO_DTMA_API_KEY" in text
