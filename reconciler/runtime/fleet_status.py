"""The fleet as the status page shows it: one entry per declared environment, kept across daemon cycles.

A cycle report speaks only for the environments it covered; an environment skipped this cycle (backing
off, locked by another process, or a cycle that never reached the database) keeps what the last cycle that
covered it saw, with its verdict saying why it is stale. ``update`` is a pure function of the previous
value and one report: the daemon keeps the value and the HTTP thread reads it (an immutable snapshot).

Every free text here (reasons, agent messages) has each secret value in scope redacted before it is kept.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum

from reconciler.core.backoff import BackoffState
from reconciler.core.observed import LiveListing, RecordedEnvironment, RecordedInstance, Unreachable
from reconciler.core.outcomes import StepOutcome
from reconciler.core.plan import Action, Notice, Step
from reconciler.core.planner import same_spec
from reconciler.core.redact import redact
from reconciler.core.verdict import Gap, GapKind
from reconciler.model.loader import environment_key
from reconciler.model.spec import Desired, EnvironmentSpec
from reconciler.runtime.cycle_data import CycleReport
from reconciler.runtime.execute import StepResult


class EnvVerdict(StrEnum):
    """The verdict of an environment's last cycle, as the page names it."""

    IN_SYNC = "in-sync"
    DRIFT = "drift"  # the cycle planned steps (applied unless the verdict below says otherwise)
    FAILED = "failed"  # a step the cycle applied failed
    INCOMPLETE = "incomplete"
    REFUSED = "refused"
    BACKING_OFF = "backing-off"
    LOCKED = "locked-elsewhere"  # another process holds the environment's lock
    SUSPENDED = "suspended"  # `reconciler suspend`: observed, its steps held back
    PENDING = "pending"  # no cycle has covered it yet


# Worst first: the overview sorts by this so that what needs a look is on the first page.
VERDICT_ORDER: tuple[EnvVerdict, ...] = (
    EnvVerdict.INCOMPLETE, EnvVerdict.FAILED, EnvVerdict.REFUSED, EnvVerdict.SUSPENDED, EnvVerdict.BACKING_OFF,
    EnvVerdict.LOCKED, EnvVerdict.DRIFT, EnvVerdict.PENDING, EnvVerdict.IN_SYNC,
)  # fmt: skip

# A live state after a step that succeeded: the listing was taken before the step ran.
_AFTER_OK: Mapping[Action, str | None] = {
    Action.CREATE: "running", Action.REPLACE: "running", Action.RESTART: "running", Action.START: "running",
    Action.STOP: "exited", Action.DELETE: None,
}  # fmt: skip


@dataclass(frozen=True)
class ServerStatus:
    name: str
    declared: bool
    source: str | None  # "manifests/tb.yaml:12" (the manifest line that declares it)
    desired_image: str | None
    desired_state: str | None  # running | stopped
    recorded_image: str | None
    recorded_status: str | None  # status_on_toolbox as stored
    live_image: str | None
    live_state: str | None  # None: not deployed; "unobserved" when the toolbox was not observed
    step: str | None = None  # the action the last cycle planned for it
    step_reason: str | None = None
    step_outcome: str | None = None  # as applied: ok, failed, skipped, pending...; None when not applied
    step_error: str | None = None
    run_id: int | None = None  # the journal run that applied the step
    notice: str | None = None  # "kind: message" of a notice about it (unknown state, conflict, ...)
    healthy: bool = True


@dataclass(frozen=True)
class EnvironmentStatus:
    name: str
    address: str | None
    verdict: EnvVerdict
    reason: str
    last_cycle: datetime | None  # the last cycle that covered it
    last_success: datetime | None  # the last cycle that left it complete with every step ok
    declared: int
    running: int
    unhealthy: int
    servers: tuple[ServerStatus, ...] = ()
    source: str | None = None  # the manifest file


@dataclass(frozen=True)
class EntryInputs:
    """What an in-sync environment's entry was made from: while they are the same, the next ``update`` keeps
    the entry (its servers, ten objects per toolbox, were most of a served daemon's cycle) with the new time."""

    spec: EnvironmentSpec
    row: RecordedEnvironment
    instances: tuple[RecordedInstance, ...]
    live: LiveListing | Unreachable | None
    secrets: tuple[str, ...]

    def same_as(self, other: EntryInputs) -> bool:
        return (
            self.secrets == other.secrets
            and same_spec(self.spec, other.spec)
            and (self.row.id, self.row.name, self.row.address) == (other.row.id, other.row.name, other.row.address)
            and len(self.instances) == len(other.instances)
            and all(
                a is b or (a.name, a.image, a.status) == (b.name, b.image, b.status)
                for a, b in zip(self.instances, other.instances, strict=True)
            )
            and (self.live is other.live or self.live == other.live)
        )


@dataclass(frozen=True)
class FleetStatus:
    environments: tuple[EnvironmentStatus, ...] = ()
    cycle_at: datetime | None = None
    cycles: int = 0
    cycle_ok: bool | None = None
    duration: float = 0.0
    errors: tuple[str, ...] = ()  # manifest, database and git problems of the last cycle
    git_commit: str | None = None
    # The inputs of each entry this update found in sync, by name (``EntryInputs``); not shown anywhere.
    made: Mapping[str, EntryInputs] = field(default_factory=dict, repr=False, compare=False)

    def by_name(self) -> dict[str, EnvironmentStatus]:
        return {e.name: e for e in self.environments}


class _Context:
    """One report, indexed once by environment (a cycle covers up to thousands of toolboxes)."""

    def __init__(self, report: CycleReport, now: datetime, secrets: tuple[str, ...]) -> None:
        self.report, self.now, self.secrets = report, now, secrets
        self.rows: dict[str, RecordedEnvironment] = {}
        self.instances: dict[str, list[RecordedInstance]] = defaultdict(list)
        observed = report.observed
        if observed is not None:
            for row in observed.recorded.environments:
                self.rows.setdefault(environment_key(row.id), row)
            for row in observed.recorded.environments:
                if row.name:
                    self.rows.setdefault(row.name, row)
            for i in observed.recorded.instances:
                self.instances[i.environment_id].append(i)
        self.steps: dict[str, list[Step]] = defaultdict(list)
        self.notices: dict[str, list[Notice]] = defaultdict(list)
        if report.plan is not None:
            for step in report.plan.steps:
                self.steps[step.environment_id].append(step)
            for n in report.plan.notices:
                self.notices[n.environment_id or n.environment_name].append(n)
        self.results: dict[str, dict[tuple[str, Action], StepResult]] = defaultdict(dict)
        for r in report.results:
            self.results[r.step.environment_id][(r.step.server, r.step.action)] = r
        self.gaps: dict[str | None, list[Gap]] = defaultdict(list)
        for g in report.verdict.gaps:
            self.gaps[g.environment].append(g)
        self.gap_names = set(self.gaps) - {None}

    def clean(self, text: str | None) -> str | None:
        if text is None or not self.secrets:
            return text
        return redact(text, self.secrets)

    def in_sync_inputs(
        self, name: str, spec: EnvironmentSpec, row: RecordedEnvironment | None
    ) -> EntryInputs | None:
        """The inputs of an environment this cycle left in sync (no step, notice, result, gap or suspension:
        its entry is a function of them and the time), else None."""
        if row is None or self.report.observed is None or name in self.report.suspended or name in self.gap_names:
            return None
        env_id = row.id
        if self.steps.get(env_id) or self.notices.get(env_id) or self.results.get(env_id):
            return None
        live = self.report.observed.live.get(env_id)
        return EntryInputs(spec, row, tuple(self.instances.get(env_id, ())), live, self.secrets)

    def row_of(self, spec: EnvironmentSpec) -> tuple[str, RecordedEnvironment | None]:
        """The environment's display name (its row's name, else its id, as reports name it) and its row."""
        row = self.rows.get(environment_key(spec.environment)) or self.rows.get(spec.environment)
        return (row.name or row.id, row) if row is not None else (spec.environment, None)


def update(
    previous: FleetStatus,
    report: CycleReport,
    *,
    desired: Desired | None,
    backoff: Mapping[str, BackoffState],
    now: datetime,
    secrets: Iterable[str] = (),
) -> FleetStatus:
    """The fleet after one daemon cycle. ``backoff``: environments backing off, by name; ``now``: the end of
    the cycle (UTC); ``secrets``: every secret value in scope, redacted from every text kept."""
    ctx = _Context(report, now, tuple(s for s in secrets if s))
    before = previous.by_name()
    # Sets: ``in`` on the report's tuples made this quadratic (two replicas' leases: most names are elsewhere).
    acted_on, backing_off = set(report.acted_on), set(report.backing_off)
    leased, locked = set(report.leased_elsewhere), set(report.locked_elsewhere)
    envs: list[EnvironmentStatus] = []
    made: dict[str, EntryInputs] = {}
    for spec in desired.environments if desired is not None else ():
        name, row = ctx.row_of(spec)
        old = before.get(name)
        if report.plan is None:
            envs.append(old or _pending(name, spec, "no cycle has reached the database yet"))
        elif name in backing_off:
            state = backoff.get(name, BackoffState())
            why = f"failed {state.failures} time(s) in a row: {ctx.clean(state.last_error) or 'see the log'}"
            base = old or _pending(name, spec, "")
            envs.append(replace(base, verdict=EnvVerdict.BACKING_OFF, reason=why))
        elif name in leased:
            base = old or _pending(name, spec, "")
            envs.append(replace(base, verdict=EnvVerdict.LOCKED, reason="owned by another daemon replica (lease)"))
        elif name in locked:
            base = old or _pending(name, spec, "")
            envs.append(replace(base, verdict=EnvVerdict.LOCKED, reason="being reconciled by another process"))
        elif name in acted_on or name in ctx.gap_names or row is None:
            inputs = ctx.in_sync_inputs(name, spec, row)
            kept = previous.made.get(name) if inputs is not None else None
            if inputs is not None and old is not None and kept is not None and inputs.same_as(kept):
                envs.append(_seen_again(old, now))
            else:
                envs.append(_fresh(ctx, name, spec, row, old))
            if inputs is not None:
                made[name] = inputs
        else:
            envs.append(old or _pending(name, spec, "not covered by a cycle yet"))
    return FleetStatus(
        environments=tuple(envs),
        cycle_at=now,
        cycles=previous.cycles + 1,
        cycle_ok=report.ok,
        duration=report.duration,
        errors=tuple(ctx.clean(e) or "" for e in report.errors),
        git_commit=report.git_commit,
        made=made,
    )


def _seen_again(old: EnvironmentStatus, now: datetime) -> EnvironmentStatus:
    """An in-sync entry covered again by a cycle with the same inputs: what ``_fresh`` gives then (the
    constructor, not ``dataclasses.replace``, which cost as much as the rest at 10,000 toolboxes)."""
    return EnvironmentStatus(
        old.name, old.address, old.verdict, old.reason, now, now, old.declared, old.running, old.unhealthy,
        old.servers, old.source,
    )  # fmt: skip


def _pending(name: str, spec: EnvironmentSpec, reason: str) -> EnvironmentStatus:
    servers = tuple(
        ServerStatus(s.name, True, str(s.source), s.image, s.state, None, None, None, None) for s in spec.servers
    )
    return EnvironmentStatus(
        name, None, EnvVerdict.PENDING, reason, None, None, len(spec.servers), 0, 0, servers, spec.source.file
    )


def _fresh(
    ctx: _Context, name: str, spec: EnvironmentSpec, row: RecordedEnvironment | None, old: EnvironmentStatus | None
) -> EnvironmentStatus:
    env_id = row.id if row is not None else None
    steps = ctx.steps.get(env_id, []) if env_id else []
    notices = ctx.notices.get(env_id or name, [])
    results = ctx.results.get(env_id, {}) if env_id else {}
    servers = _servers(ctx, spec, env_id, steps=steps, notices=notices, results=results)
    gaps = ctx.gaps.get(name, [])
    failed = [r for r in results.values() if r.outcome == StepOutcome.FAILED]
    suspension = ctx.report.suspended.get(name)
    if suspension is not None:
        # Said first, whatever else: during an incident the page must show who holds it and why.
        verdict = EnvVerdict.SUSPENDED
        held = [f"{g.server}: {g.reason}" for g in gaps if g.kind is GapKind.SUSPENDED and g.server]
        other = [f"{g.kind}: {g.reason}" for g in gaps if g.kind is not GapKind.SUSPENDED]
        reason = "; ".join([suspension.describe(), *(f"held back: {h}" for h in held), *other])
    elif gaps:
        verdict = EnvVerdict.REFUSED if all(g.kind is GapKind.REFUSED for g in gaps) else EnvVerdict.INCOMPLETE
        reason = "; ".join(f"{g.server + ': ' if g.server else ''}{g.kind}: {g.reason}" for g in gaps)
    elif failed:
        verdict = EnvVerdict.FAILED
        reason = "; ".join(f"{r.step.action} {r.step.server} failed: {r.message}" for r in failed)
    elif steps:
        verdict = EnvVerdict.DRIFT
        reason = "; ".join(f"{s.action} {s.server}: {s.reason}" for s in steps)
    else:
        verdict, reason = EnvVerdict.IN_SYNC, "matches the manifests"
    clean = verdict in (EnvVerdict.IN_SYNC, EnvVerdict.DRIFT) and all(
        r.outcome == StepOutcome.OK for r in results.values()
    )
    declared = [s for s in servers if s.declared]
    return EnvironmentStatus(
        name=name,
        address=row.address if row is not None else None,
        verdict=verdict,
        reason=ctx.clean(reason) or "",
        last_cycle=ctx.now,
        last_success=ctx.now if clean else (old.last_success if old is not None else None),
        declared=len(declared),
        running=sum(1 for s in declared if s.live_state == "running"),
        unhealthy=sum(1 for s in declared if not s.healthy),
        servers=servers,
        source=spec.source.file,
    )


def _servers(
    ctx: _Context,
    spec: EnvironmentSpec,
    env_id: str | None,
    *,
    steps: Sequence[Step],
    notices: Sequence[Notice],
    results: Mapping[tuple[str, Action], StepResult],
) -> tuple[ServerStatus, ...]:
    observed = ctx.report.observed
    recorded = {}
    live_state = None
    containers = {}
    if observed is not None and env_id is not None:
        recorded = {i.name: i for i in ctx.instances.get(env_id, ()) if i.name}
        live_state = observed.live.get(env_id)
        if isinstance(live_state, LiveListing):
            containers = live_state.by_name()
    unobserved = live_state is None or isinstance(live_state, Unreachable)
    step_of = {s.server: s for s in steps}
    notice_of: dict[str, Notice] = {}
    env_notices = [n for n in notices if n.server is None]
    for n in notices:
        if n.server is not None:
            notice_of.setdefault(n.server, n)
    declared = {s.name: s for s in spec.servers}
    names = list(declared) + sorted((set(recorded) | set(containers)) - set(declared))
    out: list[ServerStatus] = []
    for name in names:
        d, r, c = declared.get(name), recorded.get(name), containers.get(name)
        step, notice = step_of.get(name), notice_of.get(name)
        result = results.get((name, step.action)) if step is not None else None
        live: str | None
        image: str | None
        if unobserved:
            live, image = "unobserved", None
        else:
            live, image = (c.state, c.image) if c is not None else (None, None)
        if (
            step is not None
            and result is not None
            and result.outcome == StepOutcome.OK
            and step.action in _AFTER_OK
        ):
            live = _AFTER_OK[step.action]
            image = step.desired.image if step.desired is not None and live else image
        want = d.state if d is not None else None
        if want == "running":
            healthy = live == "running"
        elif want == "stopped":
            healthy = live not in {"running", "unobserved"}
        else:
            healthy = True
        if notice is None and d is not None and unobserved and env_notices:
            notice = env_notices[0]
        out.append(
            ServerStatus(
                name=name,
                declared=d is not None,
                source=str(d.source) if d is not None else None,
                desired_image=d.image if d is not None else None,
                desired_state=want,
                recorded_image=r.image if r is not None else None,
                recorded_status=r.status if r is not None else None,
                live_image=image,
                live_state=live,
                step=str(step.action) if step is not None else None,
                step_reason=ctx.clean(step.reason) if step is not None else None,
                step_outcome=str(result.outcome) if result is not None else None,
                step_error=ctx.clean(result.message) if result is not None and result.message else None,
                run_id=ctx.report.run_id if result is not None else None,
                notice=ctx.clean(f"{notice.kind}: {notice.message}") if notice is not None else None,
                healthy=healthy and (notice is None or d is None),
            )
        )
    return tuple(out)
