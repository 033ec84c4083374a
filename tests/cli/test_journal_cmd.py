"""``reconciler journal`` reads runs and steps, filtered, as text and JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from reconciler.adapters.journal import Journal


def test_journal_command_lists_and_filters(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    journal = Journal(path)
    now = datetime(2026, 3, 1, tzinfo=UTC)
    run = journal.start_run("apply", now, manifest_digest="sha256:d", note="allow-mass-delete: cleanup")
    journal.outcome(
        journal.intent(run, now, environment="tb1", server="a", action="create", reason="absent"), now, "ok"
    )
    journal.outcome(
        journal.intent(run, now, environment="tb2", server="b", action="stop", reason="desired"), now, "ok"
    )
    journal.finish_run(run, now, "converged")
    journal.start_run("plan", now, git_commit="a" * 40 + "-dirty")
    journal.close()

    def cli(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "reconciler", "journal", "--journal", str(path), *extra],
                              capture_output=True, text=True, check=False, timeout=30)  # fmt: skip

    data = json.loads(cli("--format", "json", "--env", "tb2").stdout)
    assert data[0]["id"] == run
    assert [[s["server"] for s in r["steps"]] for r in data] == [["b"]]
    assert data[0]["note"] == "allow-mass-delete: cleanup"
    text = cli().stdout
    assert "tb1/a: absent" in text and "converged" in text
    assert "commit=aaaaaaaaaaaa-dirty" in text
    assert json.loads(cli("--format", "json", "--since", "2026-03-02").stdout) == []
    assert cli("--since", "yesterday").returncode == 1
