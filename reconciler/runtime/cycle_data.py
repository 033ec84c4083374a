"""What goes into the one cycle and what comes out: its ports, request, hooks, state and report."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from reconciler.core import flap, rollout
from reconciler.core.backoff import BackoffPolicy, BackoffState
from reconciler.core.observed import LiveListing, Observed
from reconciler.core.outcomes import RunOutcome, StepOutcome
from reconciler.core.plan import Plan, Policy, Step
from reconciler.core.planner import PlanMemo
from reconciler.core.suspension import Suspension
from reconciler.core.verdict import Verdict
from reconciler.model.spec import Desired
from reconciler.ports import Clock, Dtma, Journal, Prober, Store
from reconciler.runtime.execute import ApplyResult, ExecutorConfig, StepResult
from reconciler.runtime.replicas import ReplicaShare
from reconciler.runtime.saved_plan import Basis

LockMode = Literal["none", "skip", "wait"]


@dataclass(frozen=True)
class CyclePorts:
    store: Store
    dtma: Dtma
    journal: Journal
    clock: Clock
    key: bytes = field(repr=False)  # HMAC key of the secret fingerprints
    sleep: Callable[[float], None] = time.sleep
    prober: Prober | None = None  # MCP readiness probes; None: container state only


@dataclass(frozen=True)
class CycleRequest:
    desired: Desired
    secret_values: Mapping[str, str] = field(repr=False)
    kind: Literal["plan", "apply"] = "plan"
    policy: Policy = field(default_factory=Policy)
    env_filter: tuple[str, ...] | None = None  # environment names or ids (--env)
    prune: bool = False  # every environment acts as if its manifest said policy.prune: true
    adopt: bool = False  # every environment acts as if its manifest said policy.adopt: true
    lock: LockMode = "none"  # skip: leave a locked environment to its holder (daemon); wait: apply
    lock_wait: float = 30.0  # seconds ``wait`` waits for a held lock before refusing
    journal_idle: bool = True  # False (daemon): journal only a cycle whose plan has steps
    note: str | None = None
    git_commit: str | None = None
    saved_basis: Basis | None = None  # apply plan.json: refuse when the world changed since
    want_basis: bool = False  # plan --out
    servers: tuple[str, ...] | None = None  # --server: only these servers' steps and notices (a partial plan)
    refresh: bool = True  # False (--no-refresh): the database rows stand in for the listings; no DTMA call
    # apply plan.json: (environment id, server, action) of each reviewed step; a re-plan that differs is refused
    saved_steps: tuple[tuple[str, str, str], ...] | None = None
    flap_threshold: int | None = None  # daemon: drop steps of servers that do not settle
    backoff: BackoffPolicy | None = None  # daemon: leave failing environments alone for a while
    replica: ReplicaShare | None = None  # daemon: reconcile only this replica's share (leases), where shared


@dataclass(frozen=True)
class CycleHooks:
    on_step: Callable[[StepResult], None] | None = None
    stopping: Callable[[], bool] = lambda: False
    on_run: Callable[[int | None], None] | None = None  # the journal run being applied; None once done
    rand: Callable[[], float] = random.random
    executor_config: ExecutorConfig = field(default_factory=ExecutorConfig)
    # apply: shown the plan before anything is journalled or done; False cancels (a declined confirmation)
    approve: Callable[[Plan, Verdict, Observed], bool] | None = None
    on_start: Callable[[Step], None] | None = None  # a step is about to start (progress lines)


@dataclass(frozen=True)
class CycleState:
    """A daemon's memory between cycles."""

    backoff: Mapping[str, BackoffState] = field(default_factory=dict)  # environment id -> state (failing only)
    flap: Mapping[flap.Key, flap.FlapRecord] = field(default_factory=dict)
    names: Mapping[str, str] = field(default_factory=dict)  # environment id -> name, for reports
    # (environment id, server) -> readiness probes failed in consecutive cycles (failing servers only)
    unhealthy: Mapping[tuple[str, str], int] = field(default_factory=dict)
    # (environment id, server) -> (what its probe found, monotonic time) as last written to its row
    health_written: Mapping[tuple[str, str], tuple[object, float]] = field(default_factory=dict)
    # Rollouts that halted (a step of theirs failed or was unready), by server and target spec hash: their
    # steps stay held until the spec changes again (core.rollout.hold_halted), never retried every interval.
    halted: Mapping[rollout.RolloutKey, rollout.Halt] = field(default_factory=dict)
    # The last plan's part of each toolbox with the inputs it came from: a toolbox whose rows, listing, spec,
    # probes and run-wide inputs are all the same is not planned again (``core.planner.plan_reusing``).
    plans: PlanMemo = field(default_factory=PlanMemo, repr=False)
    # Each toolbox's last listing: an equal one next cycle is replaced by it (``cycle.same_listings``).
    listings: Mapping[str, LiveListing] = field(default_factory=dict, repr=False)

    def name(self, environment_id: str) -> str:
        return self.names.get(environment_id, environment_id)

    def stalled(self) -> tuple[str, ...]:
        return tuple(f"{self.name(env)}/{server}" for env, server in flap.stalled(self.flap))


@dataclass(frozen=True)
class CycleReport:
    plan: Plan | None
    verdict: Verdict = field(default_factory=Verdict)
    outcome: RunOutcome | None = None  # as journalled (None: not journalled)
    run_id: int | None = None
    observed: Observed | None = field(default=None, repr=False)
    basis: Basis | None = None  # only when asked for (plan --out) or checked (apply plan.json)
    desired: Desired | None = field(default=None, repr=False)  # the environments in scope, as planned
    applied: ApplyResult = field(default_factory=ApplyResult)
    manifest_valid: bool = True
    database_ok: bool = True
    backing_off: tuple[str, ...] = ()
    locked_elsewhere: tuple[str, ...] = ()
    leased_elsewhere: tuple[str, ...] = ()  # owned by another daemon replica this cycle (leases)
    live_replicas: int = 0  # daemon replicas sharing the work, this one included; 0 when not sharing
    # environments in scope an operator suspended (by name): observed and planned, their steps held back
    suspended: Mapping[str, Suspension] = field(default_factory=dict)
    stalled: tuple[str, ...] = ()  # "environment/server"
    unreachable: tuple[str, ...] = ()
    acted_on: tuple[str, ...] = ()  # environments observed (and locked, when locking) this cycle
    errors: tuple[str, ...] = ()  # manifest, database and git problems, one line each
    git_commit: str | None = None
    duration: float = 0.0
    cancelled: bool = False  # the approve hook declined: nothing journalled, nothing applied

    @property
    def results(self) -> tuple[StepResult, ...]:
        return self.applied.results

    @property
    def failed(self) -> tuple[StepResult, ...]:
        return tuple(r for r in self.results if r.outcome == StepOutcome.FAILED)

    @property
    def ok(self) -> bool:
        """Database reached, manifests valid, no step failed, and every environment in scope complete."""
        return self.database_ok and self.manifest_valid and not self.failed and self.verdict.complete
