"""What the status page is built from, as the daemon's ``--listen`` server hands it over.

The page and its JSON API (``presentation.status_site``) read the daemon's fleet status (kept after every
cycle) and the journal. The journal is read through its own read-only connection, opened per request, so
that a page view never waits on, or writes to, the daemon's journal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from reconciler.adapters.journal import Journal, RunRecord, StepRecord
from reconciler.errors import JournalError
from reconciler.runtime.fleet_status import FleetStatus

# A page handler: (path, query) -> (status, body, content type), or None when the path is not its own.
Pages = Callable[[str, dict[str, list[str]]], tuple[int, bytes, str] | None]
RunsRead = tuple[list[RunRecord], list[StepRecord], str | None]


@dataclass(frozen=True)
class SiteSources:
    """Read at each request."""

    fleet: Callable[[], FleetStatus]
    ready: Callable[[], tuple[bool, str]]
    now: Callable[[], datetime]
    runs: Callable[[int], RunsRead]  # the newest N runs, their steps, or the reason there are none
    refresh: int = 30  # seconds between the page's reloads


# Builds the page handler from the sources: ``presentation.status_site.status_pages``, handed in by the CLI
# (the composition root does not import the renderers).
SiteFactory = Callable[[SiteSources], Pages]


def journal_reader(journal_path: str) -> Callable[[int], RunsRead]:
    def read(limit: int) -> RunsRead:
        try:
            journal = Journal(journal_path, read_only=True)
        except JournalError as exc:
            return [], [], str(exc)
        try:
            runs = journal.runs(limit=limit)
            if not runs:
                return [], [], None
            steps = journal.steps(since=datetime.fromisoformat(min(r.started for r in runs)))
            return runs, steps, None
        except JournalError as exc:
            return [], [], str(exc)
        finally:
            journal.close()

    return read
