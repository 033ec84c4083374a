"""apply's exit codes from the cycle's report: 0 converged, 1 nothing applied (error, refused, incomplete,
every step failed), 4 partially applied."""

from __future__ import annotations

from reconciler.core.outcomes import RunOutcome
from reconciler.core.plan import Action, Notice, NoticeKind, Plan, Step
from reconciler.core.verdict import apply_outcome, verdict_of
from reconciler.runtime.cycle import CycleReport
from reconciler.runtime.execute import ApplyResult, StepResult

STEP = Step("e", "e", "s", Action.CREATE, "absent")
REFUSED = Notice("e", "e", None, NoticeKind.REFUSED, "mass delete")
UNREACHABLE = Notice("e", "e", None, NoticeKind.UNREACHABLE, "e skipped: connection refused")


def report(outcomes: list[str], *, notices: tuple[Notice, ...] = (), errors: tuple[str, ...] = ()) -> CycleReport:
    plan = Plan(tuple(STEP for _ in outcomes), notices, errors=errors)
    applied = ApplyResult(tuple(StepResult(STEP, o) for o in outcomes))
    verdict = verdict_of(plan)
    outcome = apply_outcome(verdict, outcomes, plan_errors=bool(errors), stopped=False)
    return CycleReport(plan, verdict=verdict, outcome=outcome, applied=applied)


def code(outcomes: list[str], **kw: tuple[object, ...]) -> int:
    return report(outcomes, **kw).exit_code_apply  # type: ignore[arg-type]


def test_apply_exit_codes() -> None:
    assert code([]) == 0
    assert code(["ok", "skipped"]) == 0
    assert code(["ok", "failed"]) == 4
    assert code(["failed"]) == 1
    assert code([], notices=(REFUSED,)) == 1
    assert code(["ok"], notices=(REFUSED,)) == 4
    assert code([], errors=("secret X is not set",)) == 1
    assert code([], notices=(UNREACHABLE,)) == 1
    assert code(["ok"], notices=(UNREACHABLE,)) == 4


def test_journal_outcomes_never_say_converged_for_a_gap() -> None:
    assert report([], notices=(UNREACHABLE,)).outcome is RunOutcome.INCOMPLETE
    assert report([], notices=(REFUSED,)).outcome is RunOutcome.REFUSED
    assert report(["failed", "failed"]).outcome is RunOutcome.FAILED
    assert report(["ok"]).outcome is RunOutcome.CONVERGED
    assert report([]).ok and not report([], notices=(UNREACHABLE,)).ok
