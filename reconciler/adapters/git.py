"""The manifests' git work tree: the commit recorded on every journal run, and `run --git-pull`."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from reconciler.settings import mask_url


def manifest_commit(paths: Sequence[str | Path]) -> str | None:
    """``git rev-parse HEAD`` in the folder of the first manifest path; None outside a work tree, and None
    when git does not track that path (an ignored or untracked copy inside some checkout was not asked for
    by that checkout's commit). ``<commit>-dirty`` when a manifest file under the paths differs from it
    (modified, added, deleted or untracked)."""
    if not paths:
        return None
    first = Path(paths[0])
    folder = first if first.is_dir() else first.parent
    head = _git(folder, "rev-parse", "HEAD")
    if head is None or len(head) < 40:
        return None
    tracked = _git(folder, "ls-files", "--", first.name if first.is_file() else ".")
    if not tracked:
        return None
    changes = _git(
        folder, "status", "--porcelain", "--untracked-files=all", "--", *(str(Path(p).absolute()) for p in paths)
    )
    dirty = any(line.rstrip('"').endswith((".yaml", ".yml")) for line in (changes or "").splitlines())
    return f"{head}-dirty" if dirty else head


def _git(folder: Path, *args: str) -> str | None:
    """stdout of a git command, or None when git is missing or fails."""
    try:
        done = subprocess.run(
            ["git", *args], cwd=folder or Path("."), capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_pull(paths: Sequence[str | Path], timeout: float = 60.0) -> str | None:
    """``git pull --ff-only`` in the manifests' work tree. None on success (or outside a work tree, where
    there is nothing to pull), else a one-line reason; a failed pull leaves the tree as it was."""
    if not paths:
        return None
    first = Path(paths[0])
    folder = first if first.is_dir() else first.parent
    try:
        inside = subprocess.run(
            ["git", "rev-parse", "--is-inside-work-tree"],
            cwd=folder or Path("."),
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        if inside.returncode != 0:
            return f"{folder} is not in a git work tree"
        done = subprocess.run(
            ["git", "pull", "--ff-only", "--quiet"],
            cwd=folder or Path("."),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"git pull failed: {exc}"
    if done.returncode != 0:
        lines = [ln for ln in (done.stderr or done.stdout).splitlines() if ln.strip()]
        # A remote URL may carry credentials: mask them like a database URL.
        return "git pull --ff-only failed: " + mask_url(lines[-1] if lines else f"exit {done.returncode}")
    return None


class GitWorkTree:
    """The Git port over the ``git`` command line."""

    def __init__(self, pull_timeout: float = 60.0) -> None:
        self.pull_timeout = pull_timeout

    def commit(self, paths: Sequence[str]) -> str | None:
        return manifest_commit(paths)

    def pull(self, paths: Sequence[str]) -> str | None:
        return git_pull(paths, self.pull_timeout)
