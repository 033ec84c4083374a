"""The plan's one-line summary and its counts, shared by every format."""

from __future__ import annotations

from reconciler.core.plan import Action, Plan

# Summary buckets, in the order the text summary names them.
SUMMARY_KEYS: tuple[tuple[str, tuple[Action, ...]], ...] = (
    ("create", (Action.CREATE,)),
    ("replace", (Action.REPLACE,)),
    ("restart", (Action.RESTART, Action.START)),
    ("stop", (Action.STOP,)),
    ("delete", (Action.DELETE,)),
    ("repair", (Action.SYNC_STATUS,)),
)


def summary_counts(plan: Plan) -> dict[str, int]:
    counts = dict.fromkeys((k for k, _ in SUMMARY_KEYS), 0)
    bucket = {a: k for k, actions in SUMMARY_KEYS for a in actions}
    for s in plan.steps:
        counts[bucket[s.action]] += 1
    return counts


def counts_line(plan: Plan) -> str:
    c = summary_counts(plan)
    return (
        f"Plan: {c['create']} to create, {c['replace']} to replace, {c['restart']} to restart, "
        f"{c['stop']} to stop, {c['delete']} to delete, {c['repair']} to repair."
    )
