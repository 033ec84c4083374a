"""The plan's one-line summary and its counts, shared by every format."""

from __future__ import annotations

from reconciler.core.plan import SUMMARY_KEYS, Plan

__all__ = ["SUMMARY_KEYS", "counts_line", "summary_counts"]


def summary_counts(plan: Plan) -> dict[str, int]:
    return plan.summary_counts()


def counts_line(plan: Plan) -> str:
    c = summary_counts(plan)
    return (
        f"Plan: {c['create']} to create, {c['replace']} to replace, {c['restart']} to restart, "
        f"{c['start']} to start, {c['stop']} to stop, {c['delete']} to delete, {c['repair']} to repair."
    )
