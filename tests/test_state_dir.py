"""``.reconciler/`` made by the reconciler ignores itself, so ``git add -A`` in a manifests repository never
commits the state, the journal or the key."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.state_dir import make_state_dir


def test_only_a_created_reconciler_directory_gets_the_gitignore(tmp_path: Path) -> None:
    make_state_dir(tmp_path / ".reconciler" / "demo")
    assert (tmp_path / ".reconciler" / ".gitignore").read_text() == "*\n"
    assert not (tmp_path / ".reconciler" / "demo" / ".gitignore").exists()
    make_state_dir(tmp_path / "var" / "lib")
    assert not (tmp_path / "var" / ".gitignore").exists()
    existing = tmp_path / "repo" / ".reconciler"
    existing.mkdir(parents=True)
    make_state_dir(existing)  # the user's own directory is left as it is
    assert not (existing / ".gitignore").exists()


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_git_add_all_commits_nothing_the_reconciler_wrote(tmp_path: Path) -> None:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=tmp_path, capture_output=True, text=True, check=True)
        return done.stdout

    git("init", "-q")
    (tmp_path / "m.yaml").write_text(
        "apiVersion: mcp-reconciler/v1\nkind: Toolbox\nenvironment: tb\nservers: []\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")}
    for args in (["db", "migrate"], ["plan", "m.yaml"]):  # default state, journal and key paths
        subprocess.run([sys.executable, "-m", "reconciler", *args], cwd=tmp_path, env=env, capture_output=True,
                       timeout=60, check=False)  # fmt: skip
    assert {p.name for p in (tmp_path / ".reconciler").iterdir()} >= {".gitignore", "state.db", "journal.db"}
    git("add", "-A")
    assert git("diff", "--cached", "--name-only").split() == ["m.yaml"]


def test_the_demo_directory_is_ignored_too(tmp_path: Path) -> None:
    from reconciler.app.demo import demo_lock

    with demo_lock(tmp_path / ".reconciler" / "demo"):
        pass
    assert (tmp_path / ".reconciler" / ".gitignore").read_text() == "*\n"
