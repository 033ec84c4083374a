"""Renderers and exit codes, on golden cases that hold each kind of step and notice."""

from __future__ import annotations

from pathlib import Path

from reconciler.core.plan import Plan
from reconciler.core.planner import plan
from reconciler.presentation.exit_codes import plan_exit_code
from reconciler.presentation.github import render_github
from reconciler.presentation.markdown import render_markdown
from reconciler.presentation.text import render_text
from tests.core.golden_io import load_case

GOLDEN = Path(__file__).parents[1] / "core" / "golden"


def planned(case: str) -> Plan:
    desired, observed, policy, now, fps = load_case(GOLDEN / case)
    return plan(desired, observed, policy, now, fps)


def test_text_shows_symbols_reasons_changes_lines_and_summary() -> None:
    out = render_text(planned("35-ordering-mixed"))
    assert "  - delete zz-delete  (desired.yaml:2)" in out
    assert "  -/+ replace mm-replace  (desired.yaml:18)" in out
    assert "  + create aa-create  (desired.yaml:13)" in out
    assert "  ~ stop yy-stop" in out and "  ~ restart bb-restart" in out and "  ~ sync-status cc-sync" in out
    assert "      image: ghcr.io/example/mm-replace:1.0.0 -> ghcr.io/example/mm-replace:9" in out
    assert out.index("delete zz-delete") < out.index("stop yy-stop") < out.index("replace mm-replace")
    assert out.rstrip().endswith(
        "Plan: 3 to create, 1 to replace, 1 to restart, 0 to start, 1 to stop, 1 to delete, 1 to repair."
    )
    assert "\x1b[" not in out


def test_text_colour_only_when_asked_and_no_changes_line() -> None:
    assert "\x1b[31m" in render_text(planned("14-delete-prune-on"), color=True)
    out = render_text(planned("37-in-sync-no-changes"))
    assert out == "No changes. The toolboxes match the manifests.\n"


def test_start_renders_as_tilde() -> None:
    assert "  ~ start fetch  (desired.yaml:6)" in render_text(planned("11-start-deliberately-stopped"))


def test_secrets_render_as_sensitive_changed_only() -> None:
    p = planned("06-replace-secret-changed")
    for out in (render_text(p), render_markdown(p), render_github(p)):
        assert "hmac-sha256" not in out
    assert "env.TOKEN: (sensitive) -> (sensitive, changed)" in render_text(p)


def test_markdown_puts_summary_table_before_collapsed_details() -> None:
    out = render_markdown(planned("35-ordering-mixed"))
    assert "| create | replace | restart | start | stop | delete | repair |" in out
    assert "| 3 | 1 | 1 | 0 | 1 | 1 | 1 |" in out
    assert out.index("| 3 | 1 |") < out.index("<details>")
    assert ":warning: 4 destructive step(s)." in out


def test_github_annotations_by_severity() -> None:
    lines = render_github(planned("35-ordering-mixed")).splitlines()
    assert "::warning file=desired.yaml,line=18::replace research-toolbox/mm-replace: recorded image" in "\n".join(
        lines
    )
    assert any(
        line.startswith("::notice file=desired.yaml,line=13::create research-toolbox/aa-create") for line in lines
    )
    refused = render_github(planned("32-mass-delete-fraction-refused"))
    assert "::error::refused research-toolbox: 3 of 5 managed servers" in refused


def test_exit_codes() -> None:
    assert plan_exit_code(planned("37-in-sync-no-changes"), detailed=True) == 0
    assert plan_exit_code(planned("36-env-by-id"), detailed=True) == 2
    assert plan_exit_code(planned("14-delete-prune-on"), detailed=True) == 3
    assert plan_exit_code(planned("14-delete-prune-on"), detailed=False) == 0


def test_a_sync_step_prints_its_change_once() -> None:
    out = render_text(planned("16-sync-status-running"))
    sync = [line for line in out.splitlines() if "status_on_toolbox" in line]
    assert len(sync) == 1 and sync[0].startswith("      status_on_toolbox: ") and " -> " in sync[0]


def test_an_incomplete_plan_exits_1_unless_allowed() -> None:
    refused = planned("32-mass-delete-fraction-refused")  # a restart planned, the deletes refused
    assert plan_exit_code(refused, detailed=True, complete=False) == 1
    assert plan_exit_code(refused, detailed=False, complete=False) == 1
    assert plan_exit_code(refused, detailed=True, complete=False, allow_incomplete=True) == 3
    assert plan_exit_code(refused, detailed=False, complete=False, allow_incomplete=True) == 0
