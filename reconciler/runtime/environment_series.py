"""What the per-environment metrics show after a daemon cycle, from its report (pure: no metrics library).

Only environments the cycle speaks for get a value: those it observed, those it skipped (backing off, locked
by another replica) and those with a gap (declared but not in the database). An environment that leaves the
manifests is no longer mentioned and the metrics drop its series, so the label set stays bounded by what is
declared.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from reconciler.core.outcomes import StepOutcome
from reconciler.core.plan import Action, NoticeKind, Plan
from reconciler.core.verdict import GapKind
from reconciler.runtime.cycle import CycleReport

_ACTIONS = frozenset(a.value for a in Action)


@dataclass(frozen=True)
class EnvironmentSeries:
    """One environment's values after a cycle that covered it."""

    drift_steps: int = 0  # steps the cycle planned for it, held back or not (0 = nothing to do)
    drift_by_action: Mapping[str, int] = field(default_factory=dict)  # action -> steps, only non-zero ones
    unobserved: bool = False  # its toolbox was not observed (unreachable, not active, no token, not registered)
    failed_steps: int = 0  # steps that failed this cycle
    stalled_servers: int = 0  # servers the flap guard leaves alone
    succeeded: bool = False  # observed, complete, and every step it had ended ok and settled


@dataclass(frozen=True)
class CycleSeries:
    covered: Mapping[str, EnvironmentSeries]  # environment name -> values from this cycle
    kept: frozenset[str]  # skipped this cycle (backing off, locked elsewhere): keep their last values

    @property
    def mentioned(self) -> frozenset[str]:
        return frozenset(self.covered) | self.kept


def series_of(report: CycleReport) -> CycleSeries | None:
    """None when the cycle never planned (database down, manifests unusable): the metrics keep what they
    showed, since nothing new is known."""
    if report.plan is None:
        return None
    acted_on = set(report.acted_on)  # a set: ``in`` on the report's tuple made this quadratic in toolboxes
    names = acted_on | set(report.verdict.environments())
    drift: dict[str, dict[str, int]] = {}
    for env, action in _planned(report.plan):
        actions = drift.setdefault(env, {})
        actions[action] = actions.get(action, 0) + 1
    failed: dict[str, int] = {}
    unsettled: set[str] = set()
    for result in report.results:
        env = result.step.environment_name
        if result.outcome == StepOutcome.FAILED:
            failed[env] = failed.get(env, 0) + 1
        if result.outcome != StepOutcome.OK or result.notice is not None:
            unsettled.add(env)
    unobserved = set(report.unreachable) | {
        g.environment
        for g in report.verdict.gaps
        if g.kind is GapKind.NOT_OBSERVED and g.server is None and g.environment is not None
    }
    gaps = set(report.verdict.environments())
    stalled: dict[str, int] = {}
    for where in report.stalled:  # "environment/server"
        env = where.rsplit("/", 1)[0]
        stalled[env] = stalled.get(env, 0) + 1
    covered = {
        name: EnvironmentSeries(
            drift_steps=sum(drift.get(name, {}).values()),
            drift_by_action=dict(drift.get(name, {})),
            unobserved=name in unobserved,
            failed_steps=failed.get(name, 0),
            stalled_servers=stalled.get(name, 0),
            succeeded=name in acted_on and name not in gaps and name not in unsettled,
        )
        for name in names
    }
    kept = frozenset(report.backing_off) | frozenset(report.locked_elsewhere)
    return CycleSeries(covered, kept - set(covered))


def _planned(plan: Plan) -> Iterator[tuple[str, str]]:
    """(environment, action) of every step the plan holds, and of every step held back because its
    environment is suspended (that drift is still there: the held step's notice begins with its action)."""
    for step in plan.steps:
        yield step.environment_name, str(step.action)
    for notice in plan.notices:
        if notice.kind is NoticeKind.SUSPENDED and notice.server is not None:
            action = notice.message.split(" ", 1)[0]
            if action in _ACTIONS:
                yield notice.environment_name, action
