"""Whether a plan saw everything it speaks for: incomplete is not clean.

A plan is *complete* when every toolbox in scope was observed, no safety rule refused part of it, and every
declared server can be reconciled. Otherwise each gap is named (environment, address, why), so that no
output says "match the manifests", no exit code says clean and no journal run says ``converged`` for a
toolbox nobody looked at. Pure: the plan's notices and errors, and the observation for addresses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from reconciler.core.observed import Observed
from reconciler.core.outcomes import RunOutcome, StepOutcome
from reconciler.core.plan import Notice, NoticeKind, Plan


class GapKind(StrEnum):
    NOT_OBSERVED = (
        "not-observed"  # unreachable, auth rejected, no token, Docker down, not registered, state unknown
    )
    REFUSED = "refused"  # the mass-delete guard or allowEmpty stopped steps
    UNRECONCILABLE = "unreconcilable"  # a declared server that cannot be reconciled (conflict, plan error, ...)
    UNHEALTHY = "unhealthy"  # a running server that does not pass its readiness probe
    SUSPENDED = "suspended"  # a step held back because an operator suspended the environment


# Which notices leave a gap, and of which kind: the one list of what "cannot be settled now" means (the
# planner, the renderers and the journal all ask here). The others (unmanaged, orphan) are the plan
# deliberately leaving something alone: the toolbox was still fully seen.
GAP_KINDS: Mapping[NoticeKind, GapKind] = {
    NoticeKind.UNREACHABLE: GapKind.NOT_OBSERVED,
    NoticeKind.UNKNOWN_ENVIRONMENT: GapKind.NOT_OBSERVED,
    NoticeKind.UNKNOWN_STATE: GapKind.NOT_OBSERVED,
    NoticeKind.REFUSED: GapKind.REFUSED,
    NoticeKind.CONFLICT: GapKind.UNRECONCILABLE,
    NoticeKind.FORGOTTEN: GapKind.UNRECONCILABLE,
    NoticeKind.STALLED: GapKind.UNRECONCILABLE,
    NoticeKind.NAME_HELD: GapKind.UNRECONCILABLE,  # only an agent restart (or the hold's end) settles it
    NoticeKind.PENDING: GapKind.UNRECONCILABLE,  # a deploy sent and not yet listed
    NoticeKind.PORT_UNPUBLISHED: GapKind.UNRECONCILABLE,  # the declared hostPort is not published
    NoticeKind.PROTECTED: GapKind.UNRECONCILABLE,  # a declared server whose replace protect blocks
    NoticeKind.PROBE_FAILED: GapKind.UNHEALTHY,  # seen running, but its server did not answer: not converged
    NoticeKind.UNHEALTHY: GapKind.UNHEALTHY,
    # The server answers but offers less than declared: no step fixes it (the image must), so not converged.
    NoticeKind.OFFER_DRIFT: GapKind.UNRECONCILABLE,
    NoticeKind.ROLLOUT_HALTED: GapKind.UNRECONCILABLE,  # the rollout stopped on this toolbox
    NoticeKind.ROLLOUT_HELD: GapKind.UNRECONCILABLE,  # held by a rollout that halted, until the spec changes
    NoticeKind.SUSPENDED: GapKind.SUSPENDED,  # a step held back (the environment's own notice is no gap)
}


def gap_kind(notice: Notice) -> GapKind | None:
    """The gap this notice leaves, or None. A ``protected`` notice about a server that is no longer declared
    (it carries no manifest line) is the plan keeping it on purpose, as an orphan is kept: no gap. A declared
    protected server whose spec needs a replace cannot be reconciled: a gap. A ``suspended`` notice about a
    whole environment only marks it (``core.suspension``); one about a server is a step held back: a gap."""
    if notice.kind is NoticeKind.PROTECTED and notice.source is None:
        return None
    if notice.kind is NoticeKind.SUSPENDED and notice.server is None:
        return None
    return GAP_KINDS.get(notice.kind)


@dataclass(frozen=True)
class Gap:
    """One thing the plan could not see or do. ``environment`` is None for a plan-wide error."""

    environment: str | None  # the environment's name (its id when it has none)
    address: str | None  # the toolbox's public IP address, when known
    kind: GapKind
    reason: str
    server: str | None = None

    @property
    def where(self) -> str:
        """``research-toolbox at 127.0.0.2`` (or the name alone, or ``plan`` for a plan-wide error)."""
        if self.environment is None:
            return "plan"
        return f"{self.environment} at {self.address}" if self.address else self.environment

    def __str__(self) -> str:
        server = f"/{self.server}" if self.server else ""
        return f"{self.where}{server}: {self.kind}: {self.reason}"


@dataclass(frozen=True)
class Verdict:
    gaps: tuple[Gap, ...] = ()

    @property
    def complete(self) -> bool:
        return not self.gaps

    @property
    def outcome(self) -> RunOutcome | None:
        """None when complete; REFUSED when refusals are the only gaps; INCOMPLETE otherwise."""
        if not self.gaps:
            return None
        if all(g.kind is GapKind.REFUSED for g in self.gaps):
            return RunOutcome.REFUSED
        return RunOutcome.INCOMPLETE

    def environments(self) -> tuple[str, ...]:
        """The environments with a gap, by name, sorted, each once."""
        return tuple(sorted({g.environment for g in self.gaps if g.environment is not None}))

    def of(self, environment: str) -> tuple[Gap, ...]:
        return tuple(g for g in self.gaps if g.environment == environment)


def _gap(notice: Notice, kind: GapKind, addresses: Mapping[str, str]) -> Gap:
    name = notice.environment_name or notice.environment_id or None
    return Gap(name, addresses.get(notice.environment_id), kind, notice.message, notice.server)


def verdict_of(
    plan: Plan, observed: Observed | None = None, *, addresses: Mapping[str, str] | None = None
) -> Verdict:
    """The plan's gaps in the plan's notice order, then its plan-wide errors. ``observed`` (when given)
    supplies each toolbox's address; a saved plan rendered without observing uses the ``addresses`` it kept."""
    addresses = dict(addresses or {})
    if observed is not None:
        addresses = {e.id: e.address for e in observed.recorded.environments if e.address}
    gaps = [_gap(n, kind, addresses) for n in plan.notices if (kind := gap_kind(n)) is not None]
    gaps += [Gap(None, None, GapKind.UNRECONCILABLE, error) for error in plan.errors]
    return Verdict(tuple(gaps))


def apply_outcome(
    verdict: Verdict,
    step_outcomes: Sequence[StepOutcome | str],
    *,
    plan_errors: bool,
    stopped: bool,
    unsettled: bool = False,
    halted: bool = False,
) -> RunOutcome:
    """The one rule for an apply run's journal outcome (``apply``, ``run --once``, every daemon cycle):

    - plan errors stopped every step: NOTHING_APPLIED;
    - the daemon was stopping and skipped steps: STOPPED;
    - a rollout halted (``halted``: its first wave, or a later one, did not end ok and the toolboxes not yet
      reached keep their version): PARTIAL, even when the halting step was the only one tried;
    - a step failed: PARTIAL when another step succeeded (or was applied and left unready), else FAILED
      (every step tried failed);
    - a step was applied but its server did not pass its readiness (UNREADY): PARTIAL;
    - a deploy was left pending (sent, not yet listed), or a step met what cannot be settled now
      (``unsettled``: a held name, a declared hostPort the new container does not publish): INCOMPLETE;
    - otherwise the verdict's INCOMPLETE or REFUSED when the plan had gaps, else CONVERGED.
    """
    outcomes = {StepOutcome(o) for o in step_outcomes}
    if plan_errors and not outcomes:
        return RunOutcome.NOTHING_APPLIED
    if stopped and StepOutcome.SKIPPED in outcomes:
        return RunOutcome.STOPPED
    if halted:
        return RunOutcome.PARTIAL
    applied = bool(outcomes & {StepOutcome.OK, StepOutcome.UNREADY})
    if StepOutcome.FAILED in outcomes:
        return RunOutcome.PARTIAL if applied else RunOutcome.FAILED
    if StepOutcome.UNREADY in outcomes:
        return RunOutcome.PARTIAL
    if unsettled or StepOutcome.PENDING in outcomes:
        return RunOutcome.INCOMPLETE
    return verdict.outcome or RunOutcome.CONVERGED


def plan_outcome(verdict: Verdict, plan: Plan) -> RunOutcome:
    """A plan run's journal outcome: INCOMPLETE or REFUSED when the plan has gaps, else CHANGES or NO_CHANGES."""
    return verdict.outcome or (RunOutcome.CHANGES if plan.steps else RunOutcome.NO_CHANGES)
