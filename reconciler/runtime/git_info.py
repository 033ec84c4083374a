"""The git commit of the manifests, recorded on every journal run when they sit in a git work tree."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path


def manifest_commit(paths: Sequence[str | Path]) -> str | None:
    """``git rev-parse HEAD`` in the folder of the first manifest path; None outside a work tree."""
    if not paths:
        return None
    first = Path(paths[0])
    folder = first if first.is_dir() else first.parent
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=folder or Path("."),
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and len(commit) >= 40 else None
