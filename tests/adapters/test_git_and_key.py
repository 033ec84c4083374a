"""The manifests' git commit, and the fingerprint key made once with mode 0600."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

from reconciler.adapters.git import manifest_commit
from reconciler.app.wiring import secret_key
from reconciler.model.secrets import Secret
from reconciler.settings import Settings


def test_commit_inside_a_work_tree_and_none_outside(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "manifests").mkdir(parents=True)
    (repo / "manifests" / "a.yaml").write_text("x: 1\n")
    assert manifest_commit([repo / "manifests"]) is None
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "m"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    assert manifest_commit([repo / "manifests" / "a.yaml"]) == head
    assert manifest_commit([repo / "manifests"]) == head
    # A copy git does not track (the demo's, under an ignored folder) was not asked for by HEAD.
    (repo / ".gitignore").write_text("scratch/\n")
    (repo / "scratch").mkdir()
    (repo / "scratch" / "b.yaml").write_text("x: 2\n")
    (repo / "manifests" / "new.yaml").write_text("x: 3\n")
    assert manifest_commit([repo / "scratch"]) is None
    assert manifest_commit([repo / "manifests" / "new.yaml"]) is None


def test_commit_is_marked_dirty_when_a_manifest_differs_from_it(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "manifests" / "research").mkdir(parents=True)
    manifest = repo / "manifests" / "research" / "a.yaml"
    manifest.write_text("x: 1\n")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "m"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    (repo / "manifests" / "notes.txt").write_text("not a manifest\n")
    assert manifest_commit([repo / "manifests"]) == head
    manifest.write_text("x: 2\n")
    assert manifest_commit([repo / "manifests"]) == f"{head}-dirty"
    assert manifest_commit([manifest]) == f"{head}-dirty"
    manifest.write_text("x: 1\n")
    (repo / "manifests" / "research" / "b.yml").write_text("x: 3\n")  # untracked manifest
    assert manifest_commit([repo / "manifests"]) == f"{head}-dirty"
    (repo / "manifests" / "research" / "b.yml").unlink()
    manifest.unlink()
    (repo / "manifests" / "research" / "keep.txt").write_text("")
    assert manifest_commit([repo / "manifests"]) == f"{head}-dirty"  # deleted


def test_secret_key_from_settings_else_a_private_file_made_once(tmp_path: Path) -> None:
    assert secret_key(Settings(secret_key=Secret("k1"))) == b"k1"
    settings = Settings(journal_path=str(tmp_path / ".reconciler" / "journal.db"))
    first = secret_key(settings)
    path = tmp_path / ".reconciler" / "secret.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) == 64 and secret_key(settings) == first
