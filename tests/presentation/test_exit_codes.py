"""apply's exit codes: 0 converged, 1 nothing applied (error or refused), 4 partially applied."""

from __future__ import annotations

from reconciler.core.observed import Observed, RecordedState
from reconciler.core.outcomes import RunOutcome
from reconciler.core.plan import Action, Notice, NoticeKind, Plan, Step
from reconciler.presentation.exit_codes import apply_exit_code
from reconciler.runtime.execute import ApplyResult, StepResult
from reconciler.runtime.reconcile import RunResult
from reconciler.runtime.saved_plan import Basis

STEP = Step("e", "e", "s", Action.CREATE, "absent")
REFUSED = Notice("e", "e", None, NoticeKind.REFUSED, "mass delete")


def code(outcomes: list[str], *, notices: tuple[Notice, ...] = (), errors: tuple[str, ...] = ()) -> int:
    plan = Plan(tuple(STEP for _ in outcomes), notices, errors=errors)
    applied = ApplyResult(tuple(StepResult(STEP, o) for o in outcomes))
    return apply_exit_code(RunResult(1, plan, Observed(RecordedState((), ()), {}), Basis(""), applied).outcome)


def test_apply_exit_codes() -> None:
    assert code([]) == 0
    assert code(["ok", "skipped"]) == 0
    assert code(["ok", "failed"]) == 4
    assert code(["failed"]) == 1
    assert code([], notices=(REFUSED,)) == 1
    assert code(["ok"], notices=(REFUSED,)) == 4
    assert code([], errors=("secret X is not set",)) == 1


def test_every_run_outcome_but_converged_and_partial_is_an_error() -> None:
    assert {o: apply_exit_code(o) for o in RunOutcome if apply_exit_code(o) != 1} == {
        RunOutcome.CONVERGED: 0,
        RunOutcome.PARTIAL: 4,
    }
