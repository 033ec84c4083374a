"""apply's exit codes: 0 converged, 1 nothing applied (error or refused), 4 partially applied."""

from __future__ import annotations

from reconciler.core.observed import Observed, RecordedState
from reconciler.core.plan import Action, Notice, NoticeKind, Plan, Step
from reconciler.runtime.execute import ApplyResult, StepResult
from reconciler.runtime.reconcile import RunResult
from reconciler.runtime.saved_plan import Basis

STEP = Step("e", "e", "s", Action.CREATE, "absent")
REFUSED = Notice("e", "e", None, NoticeKind.REFUSED, "mass delete")


def code(outcomes: list[str], *, notices: tuple[Notice, ...] = (), errors: tuple[str, ...] = ()) -> int:
    plan = Plan(tuple(STEP for _ in outcomes), notices, errors=errors)
    applied = ApplyResult(tuple(StepResult(STEP, o) for o in outcomes))
    return RunResult(1, plan, Observed(RecordedState((), ()), {}), Basis(""), applied).exit_code_apply


def test_apply_exit_codes() -> None:
    assert code([]) == 0
    assert code(["ok", "skipped"]) == 0
    assert code(["ok", "failed"]) == 4
    assert code(["failed"]) == 1
    assert code([], notices=(REFUSED,)) == 1
    assert code(["ok"], notices=(REFUSED,)) == 4
    assert code([], errors=("secret X is not set",)) == 1
