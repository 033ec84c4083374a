"""Rollouts: one spec change that replaces the same server on many toolboxes goes out in waves, and stops.

A *rollout* is every ``replace`` of one server towards one new spec hash, when it hits at least
``MIN_TOOLBOXES`` toolboxes (an image bump across the fleet). Its toolboxes, in one global order (name, then
id), form a first wave of ``first_wave`` toolboxes and then the rest, started at most ``max_in_flight`` at a
time. Any step of the rollout that ends other than ``ok`` halts it: the steps not yet started are skipped and
those toolboxes keep the version they run (Argo Rollouts' "aborted" state is the anchor).

Only replaces count: a create has no running version to keep (the server is not there), a restart or a start
changes no spec, and a fleet's first deploy keeps its full speed.

Everything here is pure: the wave plan, the progress of a run (``Progress``: which toolboxes finished, which
rollouts halted), which toolboxes may start now, and the daemon's memory of halted rollouts
(``hold_halted``: the steps of a halted rollout are left out of later plans until the spec changes again).
Because every rollout orders its toolboxes by the same global order, a toolbox waiting for one rollout's
first wave never waits for a toolbox that itself waits for it: some toolbox can always start.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from reconciler.core.outcomes import StepOutcome
from reconciler.core.plan import Action, Notice, NoticeKind, Plan, Step

MIN_TOOLBOXES = 2  # one toolbox alone is a plain replace: there is nothing to keep back
DEFAULT_FIRST_WAVE = 1
# At most this many toolboxes take the new version at once after the first wave: a failure there reaches at
# most this many toolboxes before the halt, and a 1,000-toolbox fleet rolls in 100 rounds of one deploy each.
DEFAULT_MAX_IN_FLIGHT = 10

RolloutKey = tuple[str, str]  # (server, target spec hash)

# Outcomes that halt a run's rollout but prove nothing about the new spec (nothing was tried, or a deploy is
# still pulling): the daemon does not remember these halts, so the next cycle tries the rollout again.
_INCONCLUSIVE = frozenset({StepOutcome.SKIPPED.value, StepOutcome.PENDING.value})


@dataclass(frozen=True)
class RolloutSettings:
    enabled: bool = True  # False: apply --no-rollout, RECONCILER_ROLLOUT=off
    first_wave: int = DEFAULT_FIRST_WAVE
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT


@dataclass(frozen=True)
class Toolbox:
    environment_id: str
    environment_name: str


@dataclass(frozen=True)
class Wave:
    number: int  # 1: the first wave
    toolboxes: tuple[Toolbox, ...]
    max_in_flight: int  # how many of its toolboxes may take the new version at once


@dataclass(frozen=True)
class Rollout:
    server: str
    spec_hash: str
    image: str | None
    waves: tuple[Wave, ...]  # the first wave, then the rest (absent when the first wave holds them all)

    @property
    def key(self) -> RolloutKey:
        return (self.server, self.spec_hash)

    @property
    def toolboxes(self) -> tuple[Toolbox, ...]:
        return tuple(t for w in self.waves for t in w.toolboxes)

    @property
    def first_wave(self) -> frozenset[str]:
        return frozenset(t.environment_id for t in self.waves[0].toolboxes)


def rollout_key(step: Step) -> RolloutKey | None:
    """The rollout a step would belong to: replaces only, by server and the spec hash they roll to."""
    if step.action is Action.REPLACE and step.spec_hash:
        return (step.server, step.spec_hash)
    return None


def plan_rollouts(steps: Sequence[Step], settings: RolloutSettings) -> tuple[Rollout, ...]:
    """The plan's rollouts, by server then spec hash; none when rollouts are off."""
    if not settings.enabled:
        return ()
    groups: dict[RolloutKey, dict[str, Toolbox]] = {}
    images: dict[RolloutKey, str | None] = {}
    for step in steps:
        key = rollout_key(step)
        if key is None:
            continue
        groups.setdefault(key, {})[step.environment_id] = Toolbox(step.environment_id, step.environment_name)
        images.setdefault(key, step.desired.image if step.desired is not None else None)
    first = max(1, settings.first_wave)
    in_flight = max(1, settings.max_in_flight)
    rollouts = []
    for key in sorted(groups):
        boxes = sorted(groups[key].values(), key=lambda t: (t.environment_name, t.environment_id))
        if len(boxes) < MIN_TOOLBOXES:
            continue
        waves = [Wave(1, tuple(boxes[:first]), len(boxes[:first]))]
        if boxes[first:]:
            waves.append(Wave(2, tuple(boxes[first:]), in_flight))
        rollouts.append(Rollout(key[0], key[1], images[key], tuple(waves)))
    return tuple(rollouts)


@dataclass(frozen=True)
class Halt:
    """Why a rollout stopped: the first step of it that did not end ``ok``."""

    server: str
    spec_hash: str
    image: str | None
    environment_id: str  # the toolbox where it stopped
    environment_name: str
    outcome: str
    error: str

    @property
    def key(self) -> RolloutKey:
        return (self.server, self.spec_hash)

    @property
    def reason(self) -> str:
        error = f": {self.error}" if self.error else ""
        return f"rollout halted: {self.server} on {self.environment_name} {self.outcome}{error}"

    @property
    def conclusive(self) -> bool:
        """The step tried the new spec and it did not work (failed, unready): worth remembering."""
        return self.outcome not in _INCONCLUSIVE


@dataclass(frozen=True)
class Progress:
    """A run's rollouts so far: the toolboxes each one finished (any outcome) and the halts."""

    finished: Mapping[RolloutKey, frozenset[str]] = field(default_factory=dict)
    halts: Mapping[RolloutKey, Halt] = field(default_factory=dict)


class RolloutIndex:
    """The rollouts of one plan, looked up by key and by toolbox."""

    def __init__(self, rollouts: Iterable[Rollout]) -> None:
        self.by_key: dict[RolloutKey, Rollout] = {r.key: r for r in rollouts}
        self.by_toolbox: dict[str, list[Rollout]] = {}
        for r in self.by_key.values():
            for t in r.toolboxes:
                self.by_toolbox.setdefault(t.environment_id, []).append(r)

    def of(self, step: Step) -> Rollout | None:
        key = rollout_key(step)
        return None if key is None else self.by_key.get(key)

    def ready(self, progress: Progress, waiting: Sequence[str]) -> tuple[str, ...]:
        """The toolboxes among ``waiting`` whose steps may start now: for each rollout they take part in, they
        are in its first wave, or its first wave has finished (passed or halted)."""

        def free(env_id: str) -> bool:
            for r in self.by_toolbox.get(env_id, ()):
                if env_id in r.first_wave:
                    continue
                if not r.first_wave <= progress.finished.get(r.key, frozenset()):
                    return False
            return True

        return tuple(e for e in waiting if free(e))

    def in_flight(self, env_ids: Iterable[str]) -> int | None:
        """How many of these toolboxes may run at once: the smallest bound of a later wave among them, or None
        (no bound) when they are only first waves and toolboxes outside any rollout."""
        bounds = [
            w.max_in_flight
            for e in env_ids
            for r in self.by_toolbox.get(e, ())
            for w in r.waves[1:]
            if any(t.environment_id == e for t in w.toolboxes)
        ]
        return min(bounds) if bounds else None


def record(progress: Progress, index: RolloutIndex, step: Step, outcome: str, message: str) -> Progress:
    """``progress`` after one step's result; a rollout step that did not end ``ok`` halts its rollout (the
    first such step is the reason)."""
    rollout = index.of(step)
    if rollout is None:
        return progress
    finished = dict(progress.finished)
    finished[rollout.key] = finished.get(rollout.key, frozenset()) | {step.environment_id}
    halts = dict(progress.halts)
    if str(outcome) != StepOutcome.OK.value and rollout.key not in halts:
        halts[rollout.key] = Halt(
            rollout.server,
            rollout.spec_hash,
            rollout.image,
            step.environment_id,
            step.environment_name,
            str(outcome),
            message,
        )
    return Progress(finished, halts)


def held_back(progress: Progress, index: RolloutIndex, step: Step) -> str | None:
    """Why a step is not started (its rollout halted), or None."""
    rollout = index.of(step)
    if rollout is None or rollout.key not in progress.halts:
        return None
    return f"{progress.halts[rollout.key].reason}; {step.environment_name} keeps the version it runs"


def hold_halted(plan: Plan, halted: Mapping[RolloutKey, Halt]) -> Plan:
    """The daemon's plan with the steps of rollouts that halted in an earlier cycle left out (any step that
    rolls the same server to the same spec hash: the replaces not done, the re-deploy where the first wave
    failed); each becomes a ``rollout-halted`` notice until the spec changes again."""
    if not halted:
        return plan
    kept: list[Step] = []
    notices: list[Notice] = []
    for step in plan.steps:
        halt = halted.get((step.server, step.spec_hash)) if step.spec_hash else None
        if halt is None:
            kept.append(step)
            continue
        notices.append(
            Notice(
                step.environment_id,
                step.environment_name,
                step.server,
                NoticeKind.ROLLOUT_HELD,
                f"{halt.reason}; {step.action} of {step.server} held until its spec changes again",
                step.source,
            )
        )
    if not notices:
        return plan
    return replace(plan, steps=tuple(kept), notices=plan.notices + tuple(notices))


def halt_notices(halts: Iterable[Halt], held: Iterable[Step]) -> tuple[Notice, ...]:
    """One ``rollout-halted`` notice per halt, on the toolbox where it stopped, naming the toolboxes that keep
    their version (``held``: the steps not started because of it): what notifications deliver, once."""
    kept: dict[RolloutKey, list[str]] = {}
    for step in held:
        key = rollout_key(step)
        if key is not None:
            kept.setdefault(key, []).append(step.environment_name)
    notices = []
    for halt in halts:
        names = sorted(kept.get(halt.key, ()))
        image = f" to {halt.image}" if halt.image else ""
        rest = f"; {len(names)} toolbox(es) keep the version they run: {', '.join(names[:10])}" if names else ""
        more = f" and {len(names) - 10} more" if len(names) > 10 else ""
        message = f"{halt.reason} (rollout of {halt.server}{image}){rest}{more}"
        notices.append(
            Notice(halt.environment_id, halt.environment_name, halt.server, NoticeKind.ROLLOUT_HALTED, message)
        )
    return tuple(notices)


def remember(halted: Mapping[RolloutKey, Halt], plan: Plan, new: Iterable[Halt]) -> dict[RolloutKey, Halt]:
    """The halts a daemon keeps for the next cycle: those still wanted by ``plan`` (taken before
    ``hold_halted``: a spec that changed again, or a fleet that converged otherwise, forgets its halt), plus
    this cycle's conclusive ones."""
    wanted = {(s.server, s.spec_hash) for s in plan.steps if s.spec_hash}
    kept = {k: h for k, h in halted.items() if k in wanted}
    for halt in new:
        if halt.conclusive:
            kept.setdefault(halt.key, halt)
    return kept
