"""``reconciler journal``: the runs and steps of a journal, read without writing (the CLI only formats them)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from reconciler.adapters.journal import Journal, as_dict
from reconciler.errors import ConfigError


def journal_entries(
    path: str | Path,
    *,
    since: datetime | None = None,
    run_id: int | None = None,
    limit: int = 50,
    environment: str | None = None,
    server: str | None = None,
) -> list[dict[str, Any]]:
    """Runs, newest first, each with its steps (narrowed to ``environment``/``server`` when given; a run with
    none of those steps is left out). Opened read-only, so it works on a journal this user cannot modify."""
    journal = Journal(path, read_only=True)
    try:
        runs = journal.runs(since=since, run_id=run_id, limit=limit)
        if run_id is not None and not runs:
            raise ConfigError(f"no run {run_id} in journal {path} (`reconciler journal` lists the runs)")
        out: list[dict[str, Any]] = []
        for r in runs:
            steps = journal.steps(run_id=r.id, environment=environment, server=server)
            if (environment or server) and not steps:
                continue
            out.append({**as_dict(r), "steps": [as_dict(s) for s in steps]})
        return out
    finally:
        journal.close()
