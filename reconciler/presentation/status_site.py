"""The status page's routes: ``GET /`` (HTML), ``GET /api/status`` and ``GET /api/runs?limit=N`` (JSON).

Both the page and the API are built by ``status_view`` from the same sources, so they cannot disagree.
The sources (the daemon's fleet status, readiness, clock and a journal reader) are handed in by the
daemon's HTTP server; see ``app/status_site.py``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from reconciler.presentation.status_html import render_page
from reconciler.presentation.status_view import (
    Query,
    StatusView,
    runs_json,
    runs_limit,
    runs_view,
    status_json,
    status_view,
)
from reconciler.runtime.fleet_status import FleetStatus

if TYPE_CHECKING:
    from reconciler.adapters.journal import RunRecord, StepRecord

HTML = "text/html; charset=utf-8"
JSON = "application/json"
TIMELINE_RUNS = 200  # journal runs read for the timelines: the window the page's plots draw from
RUNS_SHOWN = 20  # runs the page lists in full


class SiteData(Protocol):
    @property
    def fleet(self) -> Callable[[], FleetStatus]: ...
    @property
    def ready(self) -> Callable[[], tuple[bool, str]]: ...
    @property
    def now(self) -> Callable[[], datetime]: ...
    @property
    def runs(self) -> Callable[[int], tuple[list[RunRecord], list[StepRecord], str | None]]: ...
    @property
    def refresh(self) -> int: ...


def build_view(sources: SiteData, params: dict[str, list[str]], runs_shown: int = RUNS_SHOWN) -> StatusView:
    runs, steps, problem = sources.runs(TIMELINE_RUNS)
    view = status_view(
        sources.fleet(),
        Query.parse(params),
        now=sources.now(),
        ready=sources.ready(),
        runs=runs_view(runs, steps),
        refresh=sources.refresh,
        journal_problem=problem,
    )
    return view.with_runs_shown(runs_shown)


def _json(doc: dict[str, Any]) -> bytes:
    return (json.dumps(doc, indent=1, ensure_ascii=True) + "\n").encode()


def status_pages(sources: SiteData) -> Callable[[str, dict[str, list[str]]], tuple[int, bytes, str] | None]:
    """The request handler the HTTP server calls for every path it does not serve itself."""

    def handle(path: str, params: dict[str, list[str]]) -> tuple[int, bytes, str] | None:
        if path in ("/", "/index.html"):
            return 200, render_page(build_view(sources, params)).encode(), HTML
        if path == "/api/status":
            return 200, _json(status_json(build_view(sources, params, runs_shown=0))), JSON
        if path == "/api/runs":
            runs, steps, problem = sources.runs(runs_limit(params))
            return 200, _json(runs_json(runs_view(runs, steps), problem)), JSON
        return None

    return handle
