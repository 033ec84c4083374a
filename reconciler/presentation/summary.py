"""The plan's summary line, its counts and its verdict (complete, or which toolboxes it does not cover),
shared by every format."""

from __future__ import annotations

from reconciler.core.plan import SUMMARY_KEYS, Plan
from reconciler.core.verdict import Gap, Verdict
from reconciler.presentation.escape import printable

__all__ = ["SUMMARY_KEYS", "counts_line", "gap_text", "incomplete_headline", "summary_counts", "summary_line"]


def summary_counts(plan: Plan) -> dict[str, int]:
    return plan.summary_counts()


def counts_line(plan: Plan) -> str:
    c = summary_counts(plan)
    adopt = f"{c['adopt']} to adopt, " if c["adopt"] else ""  # named only when adoption is at work
    return (
        f"Plan: {adopt}{c['create']} to create, {c['replace']} to replace, {c['restart']} to restart, "
        f"{c['start']} to start, {c['stop']} to stop, {c['delete']} to delete, {c['repair']} to repair."
    )


def gap_text(gap: Gap) -> str:
    """``research-toolbox at 127.0.0.2: not observed: connection refused`` (control characters shown)."""
    server = f"/{gap.server}" if gap.server else ""
    return printable(f"{gap.where}{server}: {gap.kind.value.replace('-', ' ')}: {gap.reason}")


def incomplete_headline(verdict: Verdict) -> str:
    """The first thing an incomplete plan says: how many toolboxes it does not cover, by name."""
    names = verdict.environments()
    plan_wide = sum(1 for g in verdict.gaps if g.environment is None)
    parts = []
    if names:
        what = "toolbox" if len(names) == 1 else "toolboxes"
        parts.append(f"{len(names)} {what} not covered ({printable(', '.join(names))})")
    if plan_wide:
        parts.append(f"{plan_wide} plan error{'' if plan_wide == 1 else 's'}")
    return "Incomplete plan: " + " and ".join(parts) + "."


def summary_line(plan: Plan, verdict: Verdict) -> str:
    """The last line. Never "match the manifests" unless every toolbox in scope was seen and reconcilable."""
    if verdict.complete:
        return counts_line(plan) if plan.steps else "No changes. The toolboxes match the manifests."
    if not plan.steps:
        return "Incomplete: no changes planned for what was observed; the toolboxes named above were not covered."
    return "Incomplete. " + counts_line(plan)
