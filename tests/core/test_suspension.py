"""Suspended environments in the plan: ``plan`` shows their drift and marks them; ``apply`` holds their steps
back as gaps (never converged); a suspended environment without drift leaves no gap."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from reconciler.core.outcomes import RunOutcome
from reconciler.core.plan import NoticeKind, Plan
from reconciler.core.planner import plan
from reconciler.core.suspension import Suspension, hold_back, mark_suspended
from reconciler.core.verdict import GapKind, apply_outcome, plan_outcome, verdict_of
from tests.core.golden_io import load_case

GOLDEN = Path(__file__).parent / "golden"
AT = datetime(2026, 11, 27, 13, 5, tzinfo=UTC)


def planned(case: str) -> Plan:
    desired, observed, policy, now, fps = load_case(GOLDEN / case)
    return plan(desired, observed, policy, now, fps)


def _suspend(the_plan: Plan) -> tuple[dict[str, Suspension], dict[str, str]]:
    step = the_plan.steps[0]
    held = Suspension(step.environment_id, "incident 42", "alice@ops-1", AT)
    return {step.environment_id: held}, {step.environment_id: step.environment_name}


def test_plan_keeps_the_drift_and_marks_the_environment_without_a_gap() -> None:
    before = planned("35-ordering-mixed")
    suspended, names = _suspend(before)
    after = mark_suspended(before, suspended, names)
    assert after.steps == before.steps
    [mark] = [n for n in after.notices if n.kind is NoticeKind.SUSPENDED]
    assert mark.server is None and "suspended by alice@ops-1 at 2026-11-27T13:05:00Z: incident 42" in mark.message
    assert "apply and the daemon leave its" in mark.message
    assert verdict_of(after).complete == verdict_of(before).complete
    assert plan_outcome(verdict_of(after), after) is RunOutcome.CHANGES


def test_apply_holds_the_steps_back_as_suspended_gaps_and_never_converges() -> None:
    before = planned("35-ordering-mixed")
    suspended, names = _suspend(before)
    env_id = next(iter(suspended))
    after = hold_back(before, suspended, names)
    assert [s for s in after.steps if s.environment_id == env_id] == []
    assert [s for s in before.steps if s.environment_id != env_id] == list(after.steps)
    held = [n for n in after.notices if n.kind is NoticeKind.SUSPENDED and n.server is not None]
    assert sorted(n.server for n in held) == sorted(s.server for s in before.steps if s.environment_id == env_id)
    v = verdict_of(after)
    assert {g.kind for g in v.gaps} == {GapKind.SUSPENDED}
    assert apply_outcome(v, [], plan_errors=False, stopped=False) is RunOutcome.INCOMPLETE


def test_a_suspended_environment_without_drift_is_complete() -> None:
    before = planned("37-in-sync-no-changes")
    assert not before.steps
    desired, _, _, _, _ = load_case(GOLDEN / "37-in-sync-no-changes")
    env = desired.environments[0].environment
    held = {env: Suspension(env, "incident", "bob@ops", AT)}
    after = hold_back(before, held, {env: env})
    [mark] = after.notices[len(before.notices) :]
    assert mark.kind is NoticeKind.SUSPENDED and "no drift to hold back" in mark.message
    assert verdict_of(after).complete
    assert apply_outcome(verdict_of(after), [], plan_errors=False, stopped=False) is RunOutcome.CONVERGED


def test_environments_out_of_scope_are_not_marked() -> None:
    before = planned("35-ordering-mixed")
    suspended, _ = _suspend(before)
    assert mark_suspended(before, suspended, {}) == before
