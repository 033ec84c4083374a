"""What the status page and its JSON API show: one set of values, built once per request.

``status_view`` and ``runs_view`` build plain dataclasses from the daemon's fleet status and the journal;
``as_json`` turns them into the API's documents (schemas/status-api.v1.schema.json) and
``presentation.status_html`` renders the very same values as HTML, so the page and the API cannot disagree.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from reconciler.runtime.fleet_status import VERDICT_ORDER, EnvironmentStatus, FleetStatus, ServerStatus

if TYPE_CHECKING:
    from reconciler.adapters.journal import RunRecord, StepRecord

API_VERSION = 1
DEFAULT_PER_PAGE = 50
MAX_PER_PAGE = 1000
DEFAULT_RUNS = 20
MAX_RUNS = 500
TIMELINE_POINTS = 20  # cycles per environment in the timeline


@dataclass(frozen=True)
class Query:
    """What a request asked for: a page of the environments (worst verdict first), optionally filtered."""

    page: int = 1
    per_page: int = DEFAULT_PER_PAGE
    verdict: str | None = None
    search: str | None = None  # a substring of the environment's name or address

    @classmethod
    def parse(cls, params: Mapping[str, Sequence[str]]) -> Query:
        """From a URL's query (bad numbers fall back to the defaults: a page never fails on its query)."""
        return cls(
            page=max(1, _int(params, "page", 1)),
            per_page=min(MAX_PER_PAGE, max(1, _int(params, "per_page", DEFAULT_PER_PAGE))),
            verdict=_text(params, "verdict"),
            search=_text(params, "q"),
        )


def runs_limit(params: Mapping[str, Sequence[str]]) -> int:
    return min(MAX_RUNS, max(1, _int(params, "limit", DEFAULT_RUNS)))


def _int(params: Mapping[str, Sequence[str]], key: str, default: int) -> int:
    try:
        return int(params.get(key, [str(default)])[0])
    except ValueError:
        return default


def _text(params: Mapping[str, Sequence[str]], key: str) -> str | None:
    value = params.get(key, [""])[0].strip()
    return value or None


@dataclass(frozen=True)
class CyclePoint:
    """One journalled cycle that touched an environment: how long the run took and what it applied there."""

    run_id: int
    started: str
    duration: float | None  # seconds; None while the run is open
    steps: int
    ok: int
    failed: int
    outcome: str | None


@dataclass(frozen=True)
class StepView:
    id: int
    run_id: int
    environment: str
    server: str
    action: str
    reason: str
    outcome: str | None
    error: str | None
    intent_at: str
    outcome_at: str | None


@dataclass(frozen=True)
class RunView:
    id: int
    kind: str
    started: str
    finished: str | None
    outcome: str | None
    note: str | None
    git_commit: str | None
    manifest_digest: str | None
    steps: tuple[StepView, ...] = ()


@dataclass(frozen=True)
class EnvironmentView:
    status: EnvironmentStatus
    timeline: tuple[CyclePoint, ...] = ()


@dataclass(frozen=True)
class StatusView:
    generated_at: datetime
    fleet: FleetStatus
    ready: bool
    ready_reason: str
    totals: Mapping[str, int]  # environments by verdict, over the whole fleet
    total: int
    matching: int  # after the query's filters
    query: Query
    pages: int
    environments: tuple[EnvironmentView, ...]  # this page's
    runs: tuple[RunView, ...] = ()
    refresh: int = 30  # seconds between the page's reloads
    journal_problem: str | None = None

    def with_runs_shown(self, count: int) -> StatusView:
        """The timelines were drawn from every run read; the page lists only the newest ``count``."""
        return replace(self, runs=self.runs[:count])


def runs_view(runs: Sequence[RunRecord], steps: Sequence[StepRecord]) -> tuple[RunView, ...]:
    """The runs, newest first, each with its steps (``steps`` may hold steps of other runs too)."""
    by_run: dict[int, list[StepView]] = defaultdict(list)
    for s in steps:
        by_run[s.run_id].append(
            StepView(
                s.id,
                s.run_id,
                s.environment,
                s.server,
                s.action,
                s.reason,
                s.outcome,
                s.error,
                s.intent_at,
                s.outcome_at,
            )
        )
    return tuple(
        RunView(
            r.id,
            r.kind,
            r.started,
            r.finished,
            r.outcome,
            r.note,
            r.git_commit,
            r.manifest_digest,
            tuple(by_run.get(r.id, ())),
        )
        for r in runs
    )


def timelines(runs: Sequence[RunView], points: int = TIMELINE_POINTS) -> dict[str, tuple[CyclePoint, ...]]:
    """Per environment, its last ``points`` journalled cycles, oldest first (``runs`` newest first)."""
    out: dict[str, list[CyclePoint]] = defaultdict(list)
    for run in runs:
        if run.kind != "apply":
            continue
        counts: dict[str, Counter[str]] = defaultdict(Counter)
        for s in run.steps:
            counts[s.environment][s.outcome or "open"] += 1
        duration = _seconds(run.started, run.finished)
        for env, c in counts.items():
            if len(out[env]) < points:
                out[env].append(CyclePoint(run.id, run.started, duration, sum(c.values()), c["ok"], c["failed"],
                                           run.outcome))  # fmt: skip
    return {env: tuple(reversed(pts)) for env, pts in out.items()}


def _seconds(start: str, end: str | None) -> float | None:
    if end is None:
        return None
    try:
        return max(0.0, (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds())
    except ValueError:
        return None


def _rank(env: EnvironmentStatus) -> tuple[int, str]:
    return VERDICT_ORDER.index(env.verdict), env.name


def status_view(
    fleet: FleetStatus,
    query: Query,
    *,
    now: datetime,
    ready: tuple[bool, str],
    runs: Sequence[RunView] = (),
    refresh: int = 30,
    journal_problem: str | None = None,
) -> StatusView:
    """The page's values: totals over the fleet, then the query's page of environments, worst first."""
    totals = Counter(str(e.verdict) for e in fleet.environments)
    chosen = list(fleet.environments)
    if query.verdict:
        chosen = [e for e in chosen if e.verdict == query.verdict]
    if query.search:
        needle = query.search.lower()
        chosen = [e for e in chosen if needle in e.name.lower() or needle in (e.address or "").lower()]
    chosen.sort(key=_rank)
    pages = max(1, math.ceil(len(chosen) / query.per_page))
    start = (min(query.page, pages) - 1) * query.per_page
    shown = chosen[start : start + query.per_page]
    lines = timelines(runs)
    return StatusView(
        generated_at=now,
        fleet=fleet,
        ready=ready[0],
        ready_reason=ready[1].splitlines()[0] if ready[1] else "",
        totals={str(v): totals.get(str(v), 0) for v in VERDICT_ORDER},
        total=len(fleet.environments),
        matching=len(chosen),
        query=query,
        pages=pages,
        environments=tuple(EnvironmentView(e, lines.get(e.name, ())) for e in shown),
        runs=tuple(runs),
        refresh=refresh,
        journal_problem=journal_problem,
    )


# -- JSON ----------------------------------------------------------------------------------------------


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def server_json(s: ServerStatus) -> dict[str, Any]:
    return asdict(s)


def environment_json(view: EnvironmentView) -> dict[str, Any]:
    e = view.status
    return {
        "name": e.name,
        "address": e.address,
        "verdict": str(e.verdict),
        "reason": e.reason,
        "last_cycle": _iso(e.last_cycle),
        "last_success": _iso(e.last_success),
        "declared": e.declared,
        "running": e.running,
        "unhealthy": e.unhealthy,
        "source": e.source,
        "servers": [server_json(s) for s in e.servers],
        "timeline": [asdict(p) for p in view.timeline],
    }


def run_json(run: RunView) -> dict[str, Any]:
    return asdict(run)


def status_json(view: StatusView) -> dict[str, Any]:
    """``GET /api/status``."""
    fleet = view.fleet
    return {
        "version": API_VERSION,
        "generated_at": view.generated_at.isoformat(),
        "daemon": {
            "ready": view.ready,
            "ready_reason": view.ready_reason,
            "cycles": fleet.cycles,
            "last_cycle": _iso(fleet.cycle_at),
            "last_cycle_ok": fleet.cycle_ok,
            "last_cycle_seconds": round(fleet.duration, 3),
            "errors": list(fleet.errors),
            "git_commit": fleet.git_commit,
        },
        "totals": dict(view.totals),
        "environments_total": view.total,
        "matching": view.matching,
        "page": min(view.query.page, view.pages),
        "per_page": view.query.per_page,
        "pages": view.pages,
        "environments": [environment_json(e) for e in view.environments],
    }


def runs_json(runs: Sequence[RunView], journal_problem: str | None = None) -> dict[str, Any]:
    """``GET /api/runs``."""
    return {"version": API_VERSION, "journal_problem": journal_problem, "runs": [run_json(r) for r in runs]}
