"""apply's exit codes from the cycle's journal outcome: 0 converged, 4 partially applied, 1 anything else
(an error, a refusal, an incomplete run, every step failed, with nothing applied)."""

from __future__ import annotations

from reconciler.core.outcomes import RunOutcome
from reconciler.core.plan import Action, Notice, NoticeKind, Plan, Step
from reconciler.core.verdict import apply_outcome, verdict_of
from reconciler.presentation.exit_codes import apply_exit_code
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


def code(outcomes: list[str], *, notices: tuple[Notice, ...] = (), errors: tuple[str, ...] = ()) -> int:
    outcome = report(outcomes, notices=notices, errors=errors).outcome
    assert outcome is not None
    return apply_exit_code(outcome, applied_any="ok" in outcomes)


def test_apply_exit_codes() -> None:
    assert code([]) == 0
    assert code(["ok", "skipped"]) == 0
    assert code(["ok", "failed"]) == 4
    assert code(["failed"]) == 1
    assert code([], notices=(REFUSED,)) == 1
    # Never clean, and never "nothing applied" either once another toolbox's steps were done.
    assert code(["ok"], notices=(REFUSED,)) == 4
    assert code([], errors=("secret X is not set",)) == 1
    assert code([], notices=(UNREACHABLE,)) == 1
    assert code(["ok"], notices=(UNREACHABLE,)) == 4


def test_journal_outcomes_never_say_converged_for_a_gap() -> None:
    assert report([], notices=(UNREACHABLE,)).outcome is RunOutcome.INCOMPLETE
    assert report(["ok"], notices=(REFUSED,)).outcome is RunOutcome.REFUSED
    assert report(["failed", "failed"]).outcome is RunOutcome.FAILED
    assert report(["ok"]).outcome is RunOutcome.CONVERGED
    assert report([]).ok and not report([], notices=(UNREACHABLE,)).ok


def test_every_run_outcome_but_converged_and_partial_is_an_error() -> None:
    assert {o: apply_exit_code(o) for o in RunOutcome if apply_exit_code(o) != 1} == {
        RunOutcome.CONVERGED: 0,
        RunOutcome.PARTIAL: 4,
    }
