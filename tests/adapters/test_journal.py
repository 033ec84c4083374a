"""The journal: intent before outcome, interrupted steps after a crash, retention, redaction."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from reconciler.adapters.journal import INTERRUPTED, Journal

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_intent_then_outcome_round_trip(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.db")
    run = journal.start_run("apply", NOW, manifest_digest="sha256:abc", git_commit="f" * 40)
    step = journal.intent(run, NOW, environment="tb1", server="ctx", action="create", reason="absent")
    assert journal.steps(run_id=run)[0].outcome is None  # this process still owns the run
    journal.outcome(step, NOW + timedelta(seconds=1), "failed", error="boom", status_code=500)
    journal.finish_run(run, NOW + timedelta(seconds=2), "partial")
    [rec] = journal.steps(run_id=run)
    assert (rec.outcome, rec.error, rec.status_code) == ("failed", "boom", 500)
    [r] = journal.runs(run_id=run)
    assert (r.outcome, r.manifest_digest, r.git_commit) == ("partial", "sha256:abc", "f" * 40)


def test_secrets_are_redacted(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.db", secrets=["canary-s3cr3t"])
    run = journal.start_run("apply", NOW, note="reason canary-s3cr3t")
    step = journal.intent(run, NOW, environment="e", server="s", action="create", reason="x canary-s3cr3t")
    journal.outcome(step, NOW, "failed", error="env API_KEY=canary-s3cr3t refused")
    journal.close()
    assert b"canary-s3cr3t" not in (tmp_path / "j.db").read_bytes()
    journal = Journal(tmp_path / "j.db")
    assert "***" in (journal.steps()[0].error or "")


def test_a_killed_process_leaves_interrupted_steps(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    code = (
        "import os, datetime as d\n"
        "from reconciler.adapters.journal import Journal\n"
        f"j = Journal({str(path)!r})\n"
        "now = d.datetime(2026, 1, 1, tzinfo=d.UTC)\n"
        "r = j.start_run('apply', now)\n"
        "j.intent(r, now, environment='e', server='s', action='create', reason='absent')\n"
        "os._exit(9)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], check=False, timeout=30)
    assert done.returncode == 9
    journal = Journal(path)
    assert [s.outcome for s in journal.steps()] == [INTERRUPTED]  # shown so when read
    assert journal.mark_interrupted(NOW) == 1  # and written so at the next run
    assert journal.runs()[0].outcome == INTERRUPTED


def test_retention_by_age_and_count(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.db")
    for day in range(5):
        run = journal.start_run("plan", NOW + timedelta(days=day))
        journal.intent(run, NOW, environment="e", server="s", action="create", reason="r")
        journal.finish_run(run, NOW + timedelta(days=day), "ok")
    assert journal.prune(NOW + timedelta(days=5), max_age=timedelta(days=3, hours=1)) == 2
    assert journal.prune(NOW + timedelta(days=5), keep_runs=1) == 2
    [left] = journal.runs()
    assert left.started.startswith("2026-01-06")
    assert len(journal.steps()) == 1
