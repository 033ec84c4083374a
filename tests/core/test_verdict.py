"""The verdict: which golden plans are incomplete, refused or clean, and the one apply-outcome rule."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from reconciler.core.outcomes import RunOutcome, StepOutcome
from reconciler.core.plan import NoticeKind, Plan
from reconciler.core.planner import plan
from reconciler.core.verdict import GAP_KINDS, GapKind, Verdict, apply_outcome, gap_kind, plan_outcome, verdict_of
from reconciler.model.spec import SourceRef
from tests.core.golden_io import load_case

GOLDEN = Path(__file__).parent / "golden"


def verdict(case: str) -> tuple[Plan, Verdict]:
    desired, observed, policy, now, fps = load_case(GOLDEN / case)
    the_plan = plan(desired, observed, policy, now, fps)
    return the_plan, verdict_of(the_plan, observed)


@pytest.mark.parametrize(
    ("case", "kind"),
    [
        ("20-unreachable-listing-failed", GapKind.NOT_OBSERVED),
        ("21-unreachable-not-active", GapKind.NOT_OBSERVED),
        ("22-unknown-environment", GapKind.NOT_OBSERVED),
        ("27-unknown-state", GapKind.NOT_OBSERVED),
        ("24-conflict-live-without-row", GapKind.UNRECONCILABLE),
        ("25-conflict-unmanaged-row", GapKind.UNRECONCILABLE),
        ("28-same-image-conflict", GapKind.UNRECONCILABLE),
        ("30-empty-desired-refused", GapKind.REFUSED),
        ("32-mass-delete-fraction-refused", GapKind.REFUSED),
        ("34-mass-delete-max-total", GapKind.REFUSED),
        # What cannot be settled now: a name the agent holds, a deploy still pending, a declared hostPort not
        # published, a declared server whose replace protect blocks.
        ("41-name-held-create-held-back", GapKind.UNRECONCILABLE),
        ("43-forgotten-agent-one-notice", GapKind.UNRECONCILABLE),
        ("44-deploy-pending-not-resent", GapKind.UNRECONCILABLE),
        ("45-host-port-not-published", GapKind.UNRECONCILABLE),
        ("48-protected-replace-blocked", GapKind.UNRECONCILABLE),
    ],
)
def test_gaps_are_named_by_environment_and_kind(case: str, kind: GapKind) -> None:
    the_plan, v = verdict(case)
    assert not v.complete
    assert kind in {g.kind for g in v.gaps}
    # Each gap names its environment, or is a plan-wide error (two servers sharing one image).
    assert all(g.environment or g.reason in the_plan.errors for g in v.gaps)
    expected = RunOutcome.REFUSED if kind is GapKind.REFUSED else RunOutcome.INCOMPLETE
    assert plan_outcome(v, the_plan) is expected
    assert apply_outcome(v, [], plan_errors=False, stopped=False) is expected


@pytest.mark.parametrize(
    "case",
    ["01-create-new", "13-orphan-prune-off", "15-protect-kept", "23-unmanaged-shape-b", "37-in-sync-no-changes"],
)
def test_clean_plans_are_complete(case: str) -> None:
    the_plan, v = verdict(case)
    assert v.complete and v.outcome is None and v.environments() == ()
    assert plan_outcome(v, the_plan) is (RunOutcome.CHANGES if the_plan.steps else RunOutcome.NO_CHANGES)


def test_gap_names_the_address_when_observed() -> None:
    _, v = verdict("20-unreachable-listing-failed")
    gap = v.gaps[0]
    assert gap.address is not None and f"{gap.environment} at {gap.address}" in str(gap)


def test_plan_errors_are_plan_wide_gaps() -> None:
    v = verdict_of(Plan(steps=(), errors=("secret X is not set",)))
    assert [str(g) for g in v.gaps] == ["plan: unreconcilable: secret X is not set"]
    assert apply_outcome(v, [], plan_errors=True, stopped=False) is RunOutcome.NOTHING_APPLIED


def test_apply_outcome_one_rule() -> None:
    clean = Verdict()
    ok, failed, skipped = StepOutcome.OK, StepOutcome.FAILED, StepOutcome.SKIPPED
    assert apply_outcome(clean, [ok, ok], plan_errors=False, stopped=False) is RunOutcome.CONVERGED
    assert apply_outcome(clean, [ok, failed], plan_errors=False, stopped=False) is RunOutcome.PARTIAL
    # Every step tried and failed is FAILED, for apply and the daemon alike.
    assert apply_outcome(clean, [failed, failed], plan_errors=False, stopped=False) is RunOutcome.FAILED
    assert apply_outcome(clean, ["ok", "skipped"], plan_errors=False, stopped=True) is RunOutcome.STOPPED
    assert apply_outcome(clean, [skipped], plan_errors=False, stopped=False) is RunOutcome.CONVERGED
    # A deploy left pending (sent, not yet listed) is not convergence.
    pending = StepOutcome.PENDING
    assert apply_outcome(clean, [ok, pending], plan_errors=False, stopped=False) is RunOutcome.INCOMPLETE


def test_every_notice_kind_is_either_a_gap_or_deliberately_left_alone() -> None:
    left_alone = {NoticeKind.UNMANAGED, NoticeKind.ORPHAN}
    assert set(GAP_KINDS) == set(NoticeKind) - left_alone


def test_a_protected_server_no_longer_declared_is_kept_on_purpose_not_a_gap() -> None:
    the_plan, v = verdict("15-protect-kept")
    assert [n.kind for n in the_plan.notices] == [NoticeKind.PROTECTED]
    assert v.complete
    # The same kind about a declared server (it carries its manifest line) is a gap.
    blocked = replace(the_plan.notices[0], source=SourceRef("desired.yaml", 3))
    assert gap_kind(blocked) is GapKind.UNRECONCILABLE
