"""Suspended environments (``reconciler suspend ENV``): observed and planned, never acted on.

Flux's ``suspend: true`` and Argo CD's disabled auto-sync are the model: during an incident an operator
stops the reconciler from reverting a manual fix without stopping the daemon. ``plan`` still shows a
suspended environment's drift (its steps stay, with a notice marking the environment); ``apply`` and the
daemon hold those steps back, each replaced by a ``suspended`` notice that leaves a gap, so a run whose scope
holds a suspended environment with drift is never journalled ``converged``. A suspended environment with no
drift leaves no gap: everything in it was observed and matches. Pure: the suspensions are read by the caller.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from reconciler.core.plan import Notice, NoticeKind, Plan, Step


@dataclass(frozen=True)
class Suspension:
    """One suspended environment, as stored (every replica reads the same rows)."""

    environment_id: str
    reason: str
    by: str  # user@host, or what --by said
    at: datetime  # UTC

    def describe(self) -> str:
        """``suspended by alice@ops-1 at 2026-11-27T13:05:00Z: incident 42``."""
        return f"suspended by {self.by} at {self.at.strftime('%Y-%m-%dT%H:%M:%SZ')}: {self.reason}"


def _environment_notice(suspension: Suspension, name: str, steps: int, *, planned: bool) -> Notice:
    if not steps:
        tail = "; no drift to hold back"
    elif planned:  # plan: the steps are shown
        tail = f"; apply and the daemon leave its {steps} step(s) until `reconciler resume {name}`"
    else:
        tail = f"; {steps} step(s) held back until `reconciler resume {name}`"
    return Notice(suspension.environment_id, name, None, NoticeKind.SUSPENDED, suspension.describe() + tail)


def mark_suspended(plan: Plan, suspended: Mapping[str, Suspension], names: Mapping[str, str]) -> Plan:
    """``plan``: the steps stay (the drift is shown); each suspended environment in ``names`` (id -> name,
    the environments in scope) gets one notice saying who suspended it, when and why."""
    notices = [
        _environment_notice(
            s, names[env_id], sum(1 for st in plan.steps if st.environment_id == env_id), planned=True
        )
        for env_id, s in sorted(suspended.items())
        if env_id in names
    ]
    return replace(plan, notices=(*plan.notices, *notices)) if notices else plan


def _held_notice(step: Step, suspension: Suspension) -> Notice:
    return Notice(
        step.environment_id,
        step.environment_name,
        step.server,
        NoticeKind.SUSPENDED,
        f"{step.action} held back ({step.reason}): environment {suspension.describe()}",
        step.source,
    )


def hold_back(plan: Plan, suspended: Mapping[str, Suspension], names: Mapping[str, str]) -> Plan:
    """``apply`` and the daemon: the steps of suspended environments are removed; each becomes a notice
    about its server (a gap: that drift stays), and each suspended environment in ``names`` gets the
    environment notice (no gap by itself)."""
    kept: list[Step] = []
    held: list[Notice] = []
    for step in plan.steps:
        suspension = suspended.get(step.environment_id)
        if suspension is None:
            kept.append(step)
        else:
            held.append(_held_notice(step, suspension))
    marks = [
        _environment_notice(s, names[env_id], sum(1 for n in held if n.environment_id == env_id), planned=False)
        for env_id, s in sorted(suspended.items())
        if env_id in names
    ]
    if not held and not marks:
        return plan
    return replace(plan, steps=tuple(kept), notices=(*plan.notices, *marks, *held))
