"""The flap guard (docs/architecture.md, "Diff rules"): a server that does not settle after an apply is left alone.

After a step is applied, the next observation of that server should need no step. When the same kind of
step (same action, same fields) is needed again after applying it, ``threshold`` times in a row, the server
is marked stalled: its steps are dropped from the plan (with a notice) until its desired spec changes, the
difference itself changes, or it settles. Pure: the caller keeps the state between cycles.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, replace

from reconciler.core.plan import Notice, NoticeKind, Plan, Step

Key = tuple[str, str]  # (environment id, server name)


@dataclass(frozen=True)
class FlapRecord:
    signature: str  # action and the fields that differed
    spec_hash: str | None
    repeats: int = 0  # times the same step was needed again right after applying it
    applied: bool = False  # the step was applied in the cycle that made this record
    stalled: bool = False


FlapState = Mapping[Key, FlapRecord]


def signature(step: Step) -> str:
    fields = ",".join(sorted({c.field for c in step.changes}))
    return f"{step.action}:{fields}"


def guard(
    state: FlapState, plan: Plan, planned: Collection[str], threshold: int = 2
) -> tuple[Plan, dict[Key, FlapRecord]]:
    """Drop the steps of stalled servers from ``plan`` (adding a STALLED notice) and return the new state.

    ``planned`` are the environment ids this plan covers: there, records of servers that need no step any
    more are dropped (they settled); records of other environments are kept as they are."""
    new: dict[Key, FlapRecord] = {k: r for k, r in state.items() if k[0] not in planned}
    kept: list[Step] = []
    notices: list[Notice] = []
    for step in plan.steps:
        key = (step.environment_id, step.server)
        sig = signature(step)
        old = state.get(key)
        if old is not None and old.signature == sig and old.spec_hash == step.spec_hash:
            if old.stalled:
                record = old
            elif old.applied:
                repeats = old.repeats + 1
                record = FlapRecord(sig, step.spec_hash, repeats, stalled=repeats >= threshold)
            else:
                record = replace(old, applied=False)
        else:
            record = FlapRecord(sig, step.spec_hash)
        new[key] = record
        if record.stalled:
            notices.append(
                Notice(
                    step.environment_id,
                    step.environment_name,
                    step.server,
                    NoticeKind.STALLED,
                    f"{step.server} still needs {step.action} after {record.repeats} applies in a row "
                    f"({step.reason}); left alone until its spec or its live state changes",
                    step.source,
                )
            )
        else:
            kept.append(step)
    if not notices:
        return plan, new
    return replace(plan, steps=tuple(kept), notices=tuple(plan.notices) + tuple(notices)), new


def after_apply(state: Mapping[Key, FlapRecord], applied: Iterable[Step]) -> dict[Key, FlapRecord]:
    """Mark the records of steps that were applied successfully this cycle."""
    new = dict(state)
    for step in applied:
        key = (step.environment_id, step.server)
        record = new.get(key) or FlapRecord(signature(step), step.spec_hash)
        new[key] = replace(record, applied=True)
    return new


def stalled(state: FlapState) -> tuple[Key, ...]:
    return tuple(sorted(k for k, r in state.items() if r.stalled))
