"""The status page's values and HTML, from fleet statuses built in memory (no daemon, no I/O)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import jsonschema

from reconciler.presentation.status_html import render_page, timeline_svg
from reconciler.presentation.status_view import CyclePoint, Query, RunView, StepView, status_json, status_view
from reconciler.resources import schema_path
from reconciler.runtime.fleet_status import EnvironmentStatus, EnvVerdict, FleetStatus, ServerStatus

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
SCHEMA = json.loads(schema_path("status-api.v1.schema.json").read_text())
EVIL = "<script>alert('x')</script>\x1b[2J\r\nNo changes.\u202e"


def env(
    name: str, verdict: EnvVerdict = EnvVerdict.IN_SYNC, servers: tuple[ServerStatus, ...] = ()
) -> EnvironmentStatus:
    return EnvironmentStatus(name, "10.0.0.1", verdict, f"reason of {name}", NOW, NOW, len(servers), 0, 0, servers,
                             f"{name}.yaml")  # fmt: skip


def srv(name: str, reason: str = "spec changed") -> ServerStatus:
    return ServerStatus(name, True, "m.yaml:3", "img:1", "running", "img:0", "running", "img:0", "running",
                        step="replace", step_reason=reason, step_outcome="failed", step_error=reason, run_id=7,
                        notice=f"conflict: {reason}", healthy=False)  # fmt: skip


def view(fleet: FleetStatus, runs: tuple[RunView, ...] = ()) -> str:
    return render_page(status_view(fleet, Query(), now=NOW, ready=(True, "ready"), runs=runs))


def test_markup_and_control_characters_from_manifests_and_agents_render_as_text() -> None:
    step = StepView(1, 7, EVIL, EVIL, "replace", EVIL, "failed", EVIL, NOW.isoformat(), None)
    run = RunView(7, "apply", NOW.isoformat(), None, "partial", EVIL, None, None, (step,))
    fleet = FleetStatus((env(EVIL, EnvVerdict.FAILED, (srv(EVIL, EVIL),)),), errors=(EVIL,))
    page = view(fleet, runs=(run,))
    assert "<script" not in page and "\x1b" not in page and "\u202e" not in page and "\r" not in page
    shown = "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;\\x1b[2J\\r\\nNo changes.\\u202e"
    assert page.count(shown) >= 8  # environment, server, reason, error, notice, banner, run note, step
    assert not re.search(r"^No changes\.", page, re.MULTILINE)  # no forged line


def test_a_thousand_environments_are_paged_worst_first_and_filterable() -> None:
    envs = tuple(
        env(f"tb{i:04d}", EnvVerdict.INCOMPLETE if i % 100 == 7 else EnvVerdict.IN_SYNC) for i in range(1000)
    )
    fleet = FleetStatus(envs)
    first = status_view(fleet, Query(), now=NOW, ready=(True, "ready"))
    assert first.pages == 20 and len(first.environments) == 50
    assert [e.status.name for e in first.environments[:10]] == [f"tb{i:04d}" for i in range(7, 1000, 100)]
    assert first.totals["incomplete"] == 10 and first.totals["in-sync"] == 990
    last = status_view(fleet, Query(page=99), now=NOW, ready=(True, "ready"))  # past the end: the last page
    assert last.environments[-1].status.name == "tb0999"
    found = status_view(fleet, Query(search="tb05", verdict="in-sync"), now=NOW, ready=(True, "ready"))
    assert found.matching == 99 and all(e.status.name.startswith("tb05") for e in found.environments)
    page = render_page(first)
    assert page.count('class="env"') == 50 and 'rel="next"' in page and "page 1 of 20" in page
    doc = status_json(first)
    jsonschema.validate(doc, {**SCHEMA, "oneOf": [{"$ref": "#/$defs/status"}]})
    assert doc["environments_total"] == 1000 and len(doc["environments"]) == 50


def test_query_parsing_never_fails() -> None:
    q = Query.parse({"page": ["x"], "per_page": ["100000"], "q": ["  "], "verdict": ["drift"]})
    assert q == Query(page=1, per_page=1000, verdict="drift", search=None)


def test_timeline_draws_one_bar_per_cycle_scaled_to_the_longest() -> None:
    pts = (CyclePoint(1, "t1", 1.0, 2, 2, 0, "converged"), CyclePoint(2, "t2", 4.0, 1, 0, 1, "failed"))
    svg = timeline_svg(pts)
    heights = [float(h) for h in re.findall(r'<rect [^>]*height="([\d.]+)"', svg)]
    assert len(heights) == 2 and heights[1] == 4 * heights[0]
    assert "#d73a49" in svg  # the failed cycle stands out
    assert timeline_svg(()) == '<span class="muted">-</span>'
