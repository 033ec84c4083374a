"""The exit codes of ``plan`` and ``apply``: the one place that turns a plan or a run outcome into a number.

plan: 0 no changes (or not ``--detailed-exitcode``), 2 changes, 3 changes including a destructive step,
1 error or an incomplete plan (unless ``--allow-incomplete``). apply (and ``run --once``, ``demo --once``):
0 converged, 4 partially applied (some steps failed, or steps were applied while a toolbox in scope was not
observed, refused or left unsettled), 1 anything else (nothing applied).
"""

from __future__ import annotations

from reconciler.core.outcomes import RunOutcome
from reconciler.core.plan import Plan

OK = 0
ERROR = 1
CHANGES = 2
DESTRUCTIVE_CHANGES = 3
PARTIAL = 4


def plan_exit_code(plan: Plan, detailed: bool, *, complete: bool = True, allow_incomplete: bool = False) -> int:
    # An incomplete plan is not clean (as Terraform exits 1 when its refresh fails): CI must not read a toolbox
    # nobody looked at as "no changes".
    if not complete and not allow_incomplete:
        return ERROR
    if not detailed or not plan.steps:
        return OK
    return DESTRUCTIVE_CHANGES if plan.has_destructive else CHANGES


def apply_exit_code(outcome: RunOutcome, *, applied_any: bool = False) -> int:
    if outcome is RunOutcome.CONVERGED:
        return OK
    if outcome is RunOutcome.PARTIAL:
        return PARTIAL
    # 1 promises "nothing applied": a run that changed one toolbox while another was unreachable or refused is
    # not converged, but saying nothing was applied would hide the changes it made.
    if applied_any and outcome in (RunOutcome.INCOMPLETE, RunOutcome.REFUSED, RunOutcome.STOPPED):
        return PARTIAL
    return ERROR
