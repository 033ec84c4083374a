"""The status page: one self-contained HTML document (inline CSS and SVG; no script, no external file).

Rendered from ``presentation.status_view`` values, the same ones the JSON API serves. Every text that came
from a manifest, a database row, an agent or the journal goes through ``_t``: control characters become
visible escapes (``presentation.escape``) and markup is escaped, so a server named ``<script>`` is shown as
text. The page reloads itself with a meta refresh; it needs no JavaScript.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from datetime import UTC, datetime
from urllib.parse import urlencode

from reconciler.presentation.escape import printable
from reconciler.presentation.status_view import TIMELINE_POINTS, CyclePoint, Query, RunView, StatusView
from reconciler.runtime.fleet_status import EnvVerdict, ServerStatus

LABELS = {
    EnvVerdict.IN_SYNC: "in sync",
    EnvVerdict.DRIFT: "drift",
    EnvVerdict.FAILED: "failed",
    EnvVerdict.INCOMPLETE: "incomplete",
    EnvVerdict.REFUSED: "refused",
    EnvVerdict.BACKING_OFF: "backing off",
    EnvVerdict.LOCKED: "locked elsewhere",
    EnvVerdict.SUSPENDED: "suspended",
    EnvVerdict.PENDING: "pending",
}

_CSS = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 1.5em 2em;color:#1b1f23;background:#fff}
h1{font-size:1.4em;margin:.8em 0 .2em}h2{font-size:1.15em;margin:1.4em 0 .4em}h3{font-size:1em;margin:.2em 0}
table{border-collapse:collapse;width:100%;margin:.3em 0 1em}th,td{text-align:left;padding:.25em .5em;
border-bottom:1px solid #e1e4e8;vertical-align:top}th{background:#f6f8fa;font-weight:600}
code,.mono{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.92em;overflow-wrap:anywhere}
.v{display:inline-block;padding:0 .5em;border-radius:1em;font-size:.85em;font-weight:600;white-space:nowrap}
.v-in-sync{background:#dcffe4;color:#176f2c}.v-drift{background:#fff5b1;color:#735c0f}
.v-incomplete,.v-failed{background:#ffdce0;color:#86181d}.v-refused{background:#ffe3c2;color:#8a4600}
.v-suspended{background:#e8dcff;color:#4c1d95}
.v-backing-off,.v-locked-elsewhere,.v-pending{background:#e1e4e8;color:#24292e}
.o-ok{color:#176f2c}.o-failed,.o-interrupted{color:#b31d28;font-weight:600}.o-skipped,.o-pending{color:#6a737d}
.muted{color:#6a737d}.banner{padding:.5em .8em;border-radius:4px;background:#ffdce0;margin:.5em 0}
.totals a{margin-right:1em}nav.pages a,nav.pages span{margin-right:.6em}details{margin:.3em 0}
summary{cursor:pointer}form{margin:.5em 0}svg{vertical-align:middle}.bad{color:#b31d28;font-weight:600}
.nowrap{white-space:nowrap}td.reason{min-width:22em;overflow-wrap:anywhere}
"""


def _t(text: object) -> str:
    """Untrusted text as HTML: control characters made visible, then markup escaped."""
    return html.escape(printable("" if text is None else text), quote=True)


def _verdict(verdict: EnvVerdict) -> str:
    return f'<span class="v v-{verdict.value}">{_t(LABELS.get(verdict, verdict.value))}</span>'


def _outcome(outcome: str | None) -> str:
    name = outcome or "open"
    return f'<span class="o-{_t(name)}">{_t(name)}</span>'


def _link(query: Query, **changes: object) -> str:
    params: dict[str, object] = {
        "page": query.page, "per_page": query.per_page, "verdict": query.verdict, "q": query.search,
    }  # fmt: skip
    params.update(changes)
    return "/?" + urlencode({k: v for k, v in params.items() if v not in (None, "")})


def render_page(view: StatusView) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="refresh" content="{int(view.refresh)}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>mcp-reconciler status</title>",
        f"<style>{_CSS}</style></head><body>",
        *_header(view),
        *_overview(view),
        *_details(view),
        *_runs(view.runs, view.journal_problem),
        "</body></html>",
    ]
    return "\n".join(parts)


def _header(view: StatusView) -> Iterable[str]:
    fleet = view.fleet
    yield "<h1>mcp-reconciler</h1>"
    last = _when(fleet.cycle_at) if fleet.cycle_at else "none yet"
    ready = "ready" if view.ready else f"not ready ({view.ready_reason})"
    yield (
        f'<p class="muted" id="daemon">daemon {_t(ready)}; last cycle {_t(last)}, '
        f"{fleet.duration:.2f}s; {fleet.cycles} cycle(s) seen; commit {_t(fleet.git_commit or '-')}; "
        f"page generated {_t(_when(view.generated_at))}, reloads every {view.refresh}s</p>"
    )
    for error in fleet.errors:
        yield f'<p class="banner">{_t(error)}</p>'
    q = view.query
    links = [f'<a href="{_t(_link(q, verdict=None, page=1))}">all {view.total}</a>']
    for verdict, count in view.totals.items():
        if count:
            label = _verdict(EnvVerdict(verdict))
            links.append(f'<a href="{_t(_link(q, verdict=verdict, page=1))}">{label} {count}</a>')
    yield f'<p class="totals" id="totals">{"".join(links)}</p>'
    yield (
        '<form method="get" action="/"><label>environment or address '
        f'<input name="q" value="{_t(q.search or "")}"></label>'
        + (f'<input type="hidden" name="verdict" value="{_t(q.verdict)}">' if q.verdict else "")
        + f'<input type="hidden" name="per_page" value="{q.per_page}"> <button>filter</button></form>'
    )


def _pager(view: StatusView) -> str:
    if view.pages <= 1:
        return ""
    q, page = view.query, min(view.query.page, view.pages)
    items = []
    if page > 1:
        items.append(f'<a href="{_t(_link(q, page=page - 1))}" rel="prev">previous</a>')
    items.append(f"<span>page {page} of {view.pages}</span>")
    if page < view.pages:
        items.append(f'<a href="{_t(_link(q, page=page + 1))}" rel="next">next</a>')
    return f'<nav class="pages">{"".join(items)}</nav>'


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _anchor(index: int) -> str:
    return f"env-{index}"


def _overview(view: StatusView) -> Iterable[str]:
    yield f"<h2>Environments ({view.matching} of {view.total})</h2>"
    yield _pager(view)
    yield (
        '<table id="environments"><thead><tr><th>environment</th><th>address</th><th>verdict</th>'
        '<th title="declared / running / unhealthy">servers</th><th>last success</th>'
        '<th title="duration (bars) and steps applied (dots) of the last journalled cycles">last cycles</th>'
        "<th>reason</th></tr></thead><tbody>"
    )
    for i, ev in enumerate(view.environments):
        e = ev.status
        success = _when(e.last_success) if e.last_success else "never"
        unhealthy = f'<span class="bad">{e.unhealthy} unhealthy</span>' if e.unhealthy else "0 unhealthy"
        yield (
            f'<tr class="env" data-env="{_t(e.name)}" data-verdict="{e.verdict.value}">'
            f'<td class="nowrap"><a href="#{_anchor(i)}">{_t(e.name)}</a></td>'
            f'<td class="mono nowrap">{_t(e.address or "-")}</td>'
            f'<td class="verdict">{_verdict(e.verdict)}</td>'
            f'<td class="nowrap">{e.declared} declared<br>{e.running} running<br>{unhealthy}</td>'
            f'<td class="nowrap">{_t(success)}</td><td>{timeline_svg(ev.timeline)}</td>'
            f'<td class="reason">{_t(e.reason)}</td></tr>'
        )
    if not view.environments:
        yield '<tr><td colspan="7" class="muted">no environment matches</td></tr>'
    yield "</tbody></table>"
    yield _pager(view)


def _details(view: StatusView) -> Iterable[str]:
    if view.environments:
        yield "<h2>Servers</h2>"
    for i, ev in enumerate(view.environments):
        e = ev.status
        is_open = " open" if e.verdict is not EnvVerdict.IN_SYNC or len(view.environments) <= 5 else ""
        yield (
            f'<details id="{_anchor(i)}" class="servers" data-env="{_t(e.name)}"{is_open}><summary>'
            f'<h3 style="display:inline">{_t(e.name)}</h3> {_verdict(e.verdict)} '
            f'<span class="muted">{_t(e.source or "")}</span></summary>'
        )
        yield (
            "<table><thead><tr><th>server</th><th>desired</th><th>recorded</th><th>live</th>"
            "<th>pending step</th><th>manifest</th></tr></thead><tbody>"
        )
        for s in e.servers:
            yield _server_row(s)
        if not e.servers:
            yield '<tr><td colspan="6" class="muted">no servers declared</td></tr>'
        yield "</tbody></table></details>"


def _state(image: str | None, state: str | None, *, missing: str) -> str:
    if state is None and image is None:
        return f'<span class="muted">{missing}</span>'
    return f"{_t(state or '-')}<br><code>{_t(image or '-')}</code>"


def _server_row(s: ServerStatus) -> str:
    if s.step:
        run = f' <a href="#run-{s.run_id}">run {s.run_id}</a>' if s.run_id is not None else ""
        outcome = f" {_outcome(s.step_outcome)}" if s.step_outcome else ""
        error = f'<br><span class="o-failed">{_t(s.step_error)}</span>' if s.step_error else ""
        step = f"<b>{_t(s.step)}</b>{outcome}{run}<br>{_t(s.step_reason)}{error}"
    else:
        step = '<span class="muted">none</span>'
    if s.notice:
        step += f'<br><span class="bad">{_t(s.notice)}</span>'
    desired = _state(s.desired_image, s.desired_state, missing="not declared")
    bad = "" if s.healthy else ' class="bad"'
    return (
        f'<tr class="server" data-server="{_t(s.name)}"><td{bad}>{_t(s.name)}</td><td>{desired}</td>'
        f"<td>{_state(s.recorded_image, s.recorded_status, missing='no row')}</td>"
        f"<td>{_state(s.live_image, s.live_state, missing='not deployed')}</td><td>{step}</td>"
        f'<td class="mono">{_t(s.source or "-")}</td></tr>'
    )


def timeline_svg(points: tuple[CyclePoint, ...], width: int = 120, height: int = 28) -> str:
    """Bars: each journalled cycle's duration (scaled to the longest shown); dots: steps applied there."""
    if not points:
        return '<span class="muted">-</span>'
    points = points[-TIMELINE_POINTS:]
    slot = width / TIMELINE_POINTS  # a fixed slot per cycle: the newest at the right edge
    offset = (TIMELINE_POINTS - len(points)) * slot
    longest = max((p.duration or 0.0) for p in points) or 1.0
    most = max(p.steps for p in points) or 1
    shapes = []
    for i, p in enumerate(points):
        h = max(2.0, (p.duration or 0.0) / longest * (height - 4))
        colour = "#d73a49" if p.failed else "#2188ff"
        x = offset + i * slot + 1
        tip = f"run {p.run_id} {p.started}: {p.duration or 0:.2f}s, {p.ok} of {p.steps} step(s) ok, {p.outcome}"
        shapes.append(
            f'<rect x="{x:.1f}" y="{height - h:.1f}" width="{max(1.0, slot - 2):.1f}" height="{h:.1f}" '
            f'fill="{colour}"><title>{_t(tip)}</title></rect>'
        )
        cy = height - 2 - p.ok / most * (height - 6)
        shapes.append(f'<circle cx="{x + slot / 2 - 1:.1f}" cy="{cy:.1f}" r="2" fill="#24292e"/>')
    return (
        f'<svg class="timeline" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="last {len(points)} journalled cycles">{"".join(shapes)}</svg>'
    )


def _runs(runs: tuple[RunView, ...], problem: str | None) -> Iterable[str]:
    yield f"<h2>Last {len(runs)} journal runs</h2>"
    if problem:
        yield f'<p class="banner">{_t(problem)}</p>'
    for run in runs:
        steps = run.steps
        counts = f", {len(steps)} step(s)" if steps else ""
        yield (
            f'<details id="run-{run.id}" class="run"><summary><b>run {run.id}</b> {_t(run.kind)} '
            f"{_t(run.started)} &rarr; {_outcome(run.outcome)}{counts} "
            f'<span class="muted">{_t(run.note or "")}</span></summary>'
        )
        if steps:
            yield (
                "<table><thead><tr><th>step</th><th>outcome</th><th>action</th><th>environment/server</th>"
                "<th>reason</th></tr></thead><tbody>"
            )
            for s in steps:
                error = f'<br><span class="o-failed">{_t(s.error)}</span>' if s.error else ""
                yield (
                    f'<tr><td><a href="#run-{s.run_id}">{s.id}</a></td><td>{_outcome(s.outcome)}</td>'
                    f"<td>{_t(s.action)}</td><td>{_t(s.environment)}/{_t(s.server)}</td>"
                    f"<td>{_t(s.reason)}{error}</td></tr>"
                )
            yield "</tbody></table>"
        yield "</details>"
