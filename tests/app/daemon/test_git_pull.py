"""--git-pull: the manifests' work tree is fast-forwarded before each cycle; a failed pull is reported and
the tree as it is stays in use. The commit is journalled with the run."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import yaml

from reconciler.adapters.journal import Journal
from tests.app.daemon.conftest import DaemonWorld, server


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=cwd,
                          capture_output=True, text=True, check=True, timeout=30)  # fmt: skip
    return done.stdout.strip()


def doc(*names: str) -> str:
    return yaml.safe_dump({"apiVersion": "mcp-reconciler/v1", "kind": "Toolbox", "environment": "tb0",
                           "servers": [server(n) for n in names]})  # fmt: skip


def test_git_pull_follows_the_branch_and_survives_a_failed_pull(world_of: Callable[..., DaemonWorld]) -> None:
    w = world_of(1)
    origin, author = w.tmp / "origin.git", w.tmp / "author"
    git(w.tmp, "init", "-q", "--bare", "-b", "main", str(origin))
    git(w.tmp, "clone", "-q", str(origin), str(author))
    (author / "tb0.yaml").write_text(doc("s1"))
    git(author, "add", ".")
    git(author, "commit", "-qm", "one server")
    git(author, "push", "-q", "origin", "HEAD:main")
    w.manifests.rmdir()
    git(w.tmp, "clone", "-q", "-b", "main", str(origin), str(w.manifests))

    d = w.daemon(git_pull=True)
    first = d.cycle()
    assert [r.step.server for r in first.results] == ["s1"] and first.errors == ()

    (author / "tb0.yaml").write_text(doc("s1", "s2"))
    git(author, "commit", "-qam", "two servers")
    git(author, "push", "-q", "origin", "HEAD:main")
    pushed = git(author, "rev-parse", "HEAD")
    second = d.cycle()
    assert [r.step.server for r in second.results] == ["s2"]
    assert second.git_commit == pushed

    origin.rename(w.tmp / "gone.git")  # the remote is unreachable: reported, the tree stays in use
    third = d.cycle()
    assert third.database_ok and third.results == ()
    assert any("git pull --ff-only failed" in e for e in third.errors)
    d.close()
    j = Journal(w.tmp / "journal.db")
    try:
        runs = j.runs(limit=20)
    finally:
        j.close()
    assert any(r.kind == "apply" and r.git_commit == pushed for r in runs)
    assert any(r.kind == "daemon-check" and r.outcome == "git-pull-failed" for r in runs)
