"""The one reconcile cycle, over ports: observe -> plan -> (apply) -> journal.

``plan``, ``apply``, ``run`` (every daemon tick, and ``--once``) and ``demo`` all call ``run_cycle``. What a
caller remembers between cycles (the daemon's backoff, flap guard and environment names) is a
``CycleState`` value passed in and returned, never kept here. The journal outcome follows one rule for every
caller (``core.verdict.apply_outcome``): a run is ``converged`` only when every toolbox in scope was observed
and every step succeeded.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace

from reconciler.core import flap, rollout
from reconciler.core.backoff import BackoffPolicy, BackoffState, failed, succeeded
from reconciler.core.observed import LiveListing, Observed, RecordedEnvironment, Unreachable
from reconciler.core.outcomes import RunOutcome, StepOutcome
from reconciler.core.plan import NoticeKind, Plan, Step
from reconciler.core.planner import PlanMemo, plan_reusing
from reconciler.core.scope import narrow_to_servers
from reconciler.core.suspension import Suspension, hold_back, mark_suspended
from reconciler.core.verdict import apply_outcome, plan_outcome, verdict_of
from reconciler.errors import ConfigError, LockHeldError, PlanError, StoreError
from reconciler.model.loader import environment_key, secret_fingerprints
from reconciler.model.spec import Desired, EnvironmentSpec
from reconciler.ports import Store
from reconciler.runtime.cycle_data import (
    CycleHooks,
    CyclePorts,
    CycleReport,
    CycleRequest,
    CycleState,
)
from reconciler.runtime.execute import ApplyResult, Executor
from reconciler.runtime.heartbeats import HEARTBEAT_INTERVAL, due_heartbeats
from reconciler.runtime.observe import observe, observe_recorded, targets_for
from reconciler.runtime.probing import ReadinessConfig, health_records, probe_health
from reconciler.runtime.replicas import take_share
from reconciler.runtime.rollout_run import apply_in_waves
from reconciler.runtime.saved_plan import basis_of, check_basis
from reconciler.settings import Settings

__all__ = ["CycleHooks", "CyclePorts", "CycleReport", "CycleRequest", "CycleState", "run_cycle", "scope"]

log = logging.getLogger(__name__)

LOCK_POLL = 0.5  # seconds between attempts while waiting for an environment's lock


def scope(
    desired: Desired,
    env_filter: Sequence[str] | None,
    *,
    prune: bool = False,
    servers: Sequence[str] | None = None,
    adopt: bool = False,
) -> Desired:
    """The environments ``--env`` names (an unknown name is an error listing the valid ones); ``servers``
    (``--server``) must each be declared in one of them."""
    environments = desired.environments
    if env_filter:
        keys = {environment_key(e.environment) for e in environments}
        unknown = [name for name in env_filter if environment_key(name) not in keys]
        if unknown:
            valid = ", ".join(sorted(e.environment for e in environments)) or "none"
            raise ConfigError(
                f"--env {', '.join(unknown)} matches no environment in the manifests (valid: {valid})"
            )
        wanted = {environment_key(name) for name in env_filter}
        environments = tuple(e for e in environments if environment_key(e.environment) in wanted)
    if servers:
        declared = {s.name for e in environments for s in e.servers}
        unknown = [name for name in servers if name not in declared]
        if unknown:
            valid = ", ".join(sorted(declared)) or "none"
            raise ConfigError(f"--server {', '.join(unknown)} matches no server in scope (valid: {valid})")
    if prune:
        environments = tuple(replace(e, policy=replace(e.policy, prune=True)) for e in environments)
    if adopt:
        environments = tuple(replace(e, policy=replace(e.policy, adopt=True)) for e in environments)
    return replace(desired, environments=environments)


def step_keys(the_plan: Plan) -> tuple[tuple[str, str, str], ...]:
    """What identifies a reviewed step: its environment, server and action, in plan order."""
    return tuple((s.environment_id, s.server, s.action.value) for s in the_plan.steps)


def run_cycle(
    ports: CyclePorts,
    settings: Settings,
    request: CycleRequest,
    state: CycleState | None = None,
    hooks: CycleHooks | None = None,
) -> tuple[CycleReport, CycleState]:
    """One cycle. Raises StoreError (the caller decides: the CLI exits 1, the daemon reports and retries),
    PlanError for a stale saved plan, LockHeldError when ``wait`` could not get an environment's lock."""
    return _Cycle(ports, settings, request, state or CycleState(), hooks or CycleHooks()).run()


class _Cycle:
    def __init__(
        self, ports: CyclePorts, settings: Settings, request: CycleRequest, state: CycleState, hooks: CycleHooks
    ) -> None:
        self.ports, self.settings, self.request, self.hooks = ports, settings, request, hooks
        self.state = state
        self.started = ports.clock.monotonic()
        self.names = dict(state.names)
        self.backing_off: list[str] = []
        self.elsewhere: list[str] = []
        self.locked: list[RecordedEnvironment] = []
        self.unhealthy = dict(state.unhealthy)
        self.health_written = dict(state.health_written)
        self.suspended: dict[str, Suspension] = {}  # environment id -> suspension, as stored
        self.leased_elsewhere: list[str] = []  # owned by another daemon replica (leases)
        self.live_replicas = 0  # live daemon replicas sharing the work, this one included (0: not sharing)
        self.plans: PlanMemo = state.plans  # replaced by this cycle's once it plans
        self.listings: Mapping[str, LiveListing] = state.listings  # likewise, once it observes

    def run(self) -> tuple[CycleReport, CycleState]:
        request = self.request
        if request.kind == "apply" and not request.refresh:
            raise ConfigError("a plan made without reading the live state (--no-refresh) cannot be applied")
        desired = scope(
            request.desired, request.env_filter, prune=request.prune, servers=request.servers, adopt=request.adopt
        )
        rows = self.ports.store.observe_environments()
        self.suspended = {s.environment_id: s for s in self.ports.store.suspensions()}
        try:
            specs, chosen = self._choose(desired, rows)
            if self.hooks.stopping():
                return self._report(None), self._next_state(self.state.flap)
            return self._plan_and_apply(replace(desired, environments=tuple(specs)), rows, chosen)
        finally:
            for row in self.locked:
                try:
                    self.ports.store.unlock_environment(row.id)
                except StoreError:
                    log.debug("unlocking %s failed (the lock goes with the connection)", row.id)

    def _choose(
        self, desired: Desired, rows: Sequence[RecordedEnvironment]
    ) -> tuple[list[EnvironmentSpec], list[RecordedEnvironment]]:
        """The environment specs to plan and the rows they match: minus those backing off or locked by
        another process (daemon), after waiting for their locks (apply). A suspended environment is chosen
        without its lock: it is observed and planned, and nothing is written to it."""
        by_key: dict[str, RecordedEnvironment] = {}
        for row in sorted(rows, key=lambda r: r.id):
            by_key.setdefault(environment_key(row.id), row)
            if row.name:
                by_key.setdefault(row.name, row)
        matched = [(spec, by_key.get(environment_key(spec.environment))) for spec in desired.environments]
        owned = self._owned([row.id for _, row in matched if row is not None])
        now = self.ports.clock.monotonic()
        specs: list[EnvironmentSpec] = []
        chosen: list[RecordedEnvironment] = []
        for spec, found in matched:
            if found is None:
                specs.append(spec)  # the planner explains "not in the database"
                continue
            row = found
            name = row.name or row.id
            self.names[row.id] = name
            if self.hooks.stopping():
                break
            if owned is not None and row.id not in owned:
                self.leased_elsewhere.append(name)
                continue
            if self.request.backoff is not None and not self.state.backoff.get(row.id, BackoffState()).due(now):
                self.backing_off.append(name)
                continue
            if self.request.lock != "none" and row.id not in self.suspended and not self._lock(row):
                self.elsewhere.append(name)
                continue
            chosen.append(row)
            specs.append(spec)
        return specs, chosen

    def _owned(self, environment_ids: Sequence[str]) -> frozenset[str] | None:
        """Daemon replicas on a database that shares the work: the environments this replica owns (leases,
        ``runtime.replicas``); None: every environment (SQLite, ``plan``, ``apply``, ``run --once``)."""
        share_of = self.request.replica
        if share_of is None or not self.ports.store.shares_work:
            return None
        owned = take_share(self.ports.store, self.ports.clock, share_of, environment_ids)
        self.live_replicas = owned.live
        return owned.environments

    def _lock(self, row: RecordedEnvironment) -> bool:
        store = self.ports.store
        if store.try_lock_environment(row.id):
            self.locked.append(row)
            return True
        if self.request.lock == "skip":
            return False
        deadline = self.ports.clock.monotonic() + self.request.lock_wait
        while self.ports.clock.monotonic() < deadline:
            self.ports.sleep(LOCK_POLL)
            if store.try_lock_environment(row.id):
                self.locked.append(row)
                return True
        holder = lock_holder(store, row.id)
        raise LockHeldError(
            f"environment {row.name or row.id} is being reconciled by {holder}; nothing applied "
            f"(waited {self.request.lock_wait:g}s): try again when it is done"
        )

    def _plan_and_apply(
        self, desired: Desired, rows: Sequence[RecordedEnvironment], chosen: Sequence[RecordedEnvironment]
    ) -> tuple[CycleReport, CycleState]:
        ports, request = self.ports, self.request
        ids = {r.id for r in chosen}
        # The rows read for choosing are the observation's: the table is not read twice per cycle.
        if request.refresh:
            observed = observe(ports.store, ports.dtma, self.settings, environment_ids=ids, environments=rows)
        else:
            observed = observe_recorded(ports.store, environment_ids=ids, environments=rows)
        observed, self.listings = same_listings(observed, self.state.listings)
        if request.refresh and ports.prober is not None:
            # A server may echo what it was given (an API key) in its error: redact this cycle's secrets.
            ports.prober.add_secrets(request.secret_values.values())
            observed, self.unhealthy = probe_health(
                ports.prober, desired, observed, self.settings, failures=self.unhealthy, now=ports.clock.now()
            )
        policy = replace(request.policy, one_instance_per_image=ports.store.unique_image_per_environment)
        fingerprints = secret_fingerprints(request.secret_values, ports.key)
        the_plan, self.plans = plan_reusing(
            desired, observed, policy, ports.clock.now(), fingerprints, memo=self.state.plans
        )
        flaps = dict(self.state.flap)
        if request.flap_threshold is not None:
            the_plan, flaps = flap.guard(flaps, the_plan, ids, request.flap_threshold)
        the_plan = narrow_to_servers(the_plan, request.servers)
        # A rollout that halted in an earlier cycle (daemon) stays halted until the spec changes again.
        halted = rollout.remember(self.state.halted, the_plan, ())
        reviewed = step_keys(the_plan)  # a saved plan's steps include a suspended environment's
        suspended = {r.id: self.names[r.id] for r in chosen if r.id in self.suspended}
        if request.kind == "plan":
            the_plan = mark_suspended(the_plan, self.suspended, suspended)
        else:
            the_plan = hold_back(the_plan, self.suspended, suspended)
        the_plan = rollout.hold_halted(the_plan, halted)
        # The waves apply would run: a suspended environment's steps (still shown by plan) take no part.
        rolled = [s for s in the_plan.steps if s.environment_id not in suspended]
        the_plan = replace(the_plan, rollouts=rollout.plan_rollouts(rolled, self._rollout_settings()))
        verdict = verdict_of(the_plan, observed)
        basis = None
        if request.want_basis or request.saved_basis is not None:
            # One fingerprint query per toolbox: paid only by `plan --out` and `apply plan.json`.
            touched = {e for e in ids if e in observed.live}
            basis = basis_of(desired.digest, ports.store, observed, touched)
        report = self._report(
            the_plan,
            verdict=verdict,
            observed=observed,
            basis=basis,
            acted_on=chosen,
            desired=desired,
            suspended={name: self.suspended[env_id] for env_id, name in suspended.items()},
        )
        if request.kind == "plan":
            outcome = plan_outcome(verdict, the_plan)
            run_id = self._start_run()
            ports.journal.finish_run(run_id, ports.clock.now(), outcome)
            return replace(report, run_id=run_id, outcome=outcome), self._next_state(flaps, halted=halted)
        if not request.journal_idle and not the_plan.steps:
            self._record_health(observed, ApplyResult())
            state = self._next_state(flaps, observed, ids, halted=halted)
            return replace(report, stalled=state.stalled()), state
        if self.hooks.approve is not None and not self.hooks.approve(the_plan, verdict, observed):
            return replace(report, cancelled=True), self._next_state(flaps, halted=halted)
        run_id = self._start_run()
        if request.saved_basis is not None and basis is not None:
            try:
                check_basis(request.saved_basis, basis)
                if request.saved_steps is not None and reviewed != request.saved_steps:
                    raise PlanError(
                        "saved plan is stale, nothing applied: planning again now gives other steps than the "
                        "reviewed ones. Run plan again."
                    )
            except PlanError:
                ports.journal.finish_run(run_id, ports.clock.now(), RunOutcome.REFUSED)
                raise
        applied = self._apply(the_plan, observed, run_id, fingerprints)
        outcome = apply_outcome(
            verdict,
            [r.outcome for r in applied.results],
            plan_errors=bool(the_plan.errors),
            stopped=self.hooks.stopping(),
            unsettled=any(r.notice is not None for r in applied.results),
            halted=bool(applied.halts),
        )
        ports.journal.finish_run(run_id, ports.clock.now(), outcome)
        self._record_health(observed, applied)
        # An unready step was applied all the same: a restart that leaves its server unhealthy counts towards
        # the flap guard, which stalls a server still unhealthy after two restarts.
        done = (StepOutcome.OK, StepOutcome.UNREADY)
        flaps = flap.after_apply(flaps, (r.step for r in applied.results if r.outcome in done))
        halted = rollout.remember(halted, the_plan, applied.halts)
        state = self._next_state(flaps, observed, ids, applied, halted=halted)
        if applied.halts:  # said once, in the report's notices, for the notifier and the status page
            held = (r.step for r in applied.results if r.notice is NoticeKind.ROLLOUT_HELD)
            notices = the_plan.notices + rollout.halt_notices(applied.halts, held)
            report = replace(report, plan=replace(the_plan, notices=notices))
        report = replace(report, run_id=run_id, outcome=outcome, applied=applied, stalled=state.stalled())
        return report, state

    def _record_health(self, observed: Observed, applied: ApplyResult) -> None:
        """Write this cycle's probes to the instance rows (``mcp_discovery_metadata``, the announced
        capabilities), except for servers whose readiness wait wrote a newer answer, and fold
        the waits' answers into the consecutive-failure counts. A failed write is logged, never fatal."""
        # A step's readiness wait wrote a newer answer; any other step may have rewritten the row's config (and
        # with it the metadata), so this cycle's answer is written again for it.
        stepped = {(r.step.environment_id, r.step.server) for r in applied.results if r.probe is not None}
        for r in applied.results:
            key = (r.step.environment_id, r.step.server)
            self.health_written.pop(key, None)  # its config was written again: write its health afresh
            if r.probe is not None and r.probe.ok:
                self.unhealthy.pop(key, None)
            elif r.probe is not None:
                self.unhealthy[key] = max(self.unhealthy.get(key, 0), 1)
        if not observed.health:
            return
        rows = {(i.environment_id, i.name): i for i in observed.recorded.instances if i.name is not None}
        health = {k: h for k, h in observed.health.items() if k not in stepped}
        records, written = health_records(health, rows, self.health_written, self.ports.clock.monotonic())
        if not records:
            return
        try:
            self.ports.store.record_health(records)
        except StoreError as exc:
            log.warning("could not record the health of %d server(s): %s", len(records), exc)
            return
        self.health_written = written

    def _start_run(self) -> int:
        request = self.request
        note = request.note
        if request.policy.allow_mass_delete:
            note = "; ".join(filter(None, [note, f"allow-mass-delete: {request.policy.allow_mass_delete}"]))
        return self.ports.journal.start_run(
            request.kind,
            self.ports.clock.now(),
            manifest_digest=request.desired.digest,
            git_commit=request.git_commit,
            note=note,
        )

    def _apply(
        self, the_plan: Plan, observed: Observed, run_id: int, fingerprints: Mapping[str, str]
    ) -> ApplyResult:
        now = self.ports.clock.now()
        due = due_heartbeats(observed, now)
        if due:
            self.ports.store.record_heartbeats(due, now, min_interval=HEARTBEAT_INTERVAL)
        if the_plan.errors or not the_plan.steps or self.hooks.stopping():
            return ApplyResult()
        store, hooks = self.ports.store, self.hooks

        def gate(step: Step) -> str | None:
            if hooks.stopping():
                return "not started: the daemon is stopping"
            if self.locked and store.lock_lost():
                return "not started: the database connection holding the environment locks was lost"
            if hooks.on_start is not None:
                hooks.on_start(step)
            return None

        executor = Executor(
            store=store,
            dtma=self.ports.dtma,
            targets=targets_for(observed.recorded, self.settings),
            journal=self.ports.journal,
            run_id=run_id,
            clock=self.ports.clock,
            sleep=self.ports.sleep,
            secret_values=self.request.secret_values,
            secret_fingerprints=fingerprints,
            config=replace(
                hooks.executor_config,
                global_concurrency=self.settings.apply_concurrency,
                deploy_concurrency=self.settings.dtma_deploy_concurrency,
            ),
            on_step=hooks.on_step,
            gate=gate,
            prober=self.ports.prober,
            readiness=ReadinessConfig(
                default_timeout=self.settings.readiness_timeout, probe_timeout=self.settings.probe_timeout
            ),
        )
        if hooks.on_run is not None:
            hooks.on_run(run_id)
        try:
            return apply_in_waves(executor, the_plan.steps, the_plan.rollouts)
        finally:
            if hooks.on_run is not None:
                hooks.on_run(None)

    def _rollout_settings(self) -> rollout.RolloutSettings:
        s = self.settings
        return rollout.RolloutSettings(s.rollout, s.rollout_first_wave, s.rollout_max_in_flight)

    def _report(
        self, the_plan: Plan | None, *, acted_on: Sequence[RecordedEnvironment] = (), **kw: object
    ) -> CycleReport:
        unreachable: tuple[str, ...] = ()
        observed = kw.get("observed")
        if isinstance(observed, Observed):
            active = {e.id for e in observed.recorded.environments if e.status == "active"}
            unreachable = tuple(
                sorted(
                    self.names.get(r.id, r.id)
                    for r in acted_on
                    if r.id in active and isinstance(observed.live.get(r.id), Unreachable)
                )
            )
        return CycleReport(
            the_plan,
            backing_off=tuple(sorted(self.backing_off)),
            locked_elsewhere=tuple(sorted(self.elsewhere)),
            leased_elsewhere=tuple(sorted(self.leased_elsewhere)),
            live_replicas=self.live_replicas,
            stalled=self.state.stalled(),
            unreachable=unreachable,
            acted_on=tuple(sorted(r.name or r.id for r in acted_on)),
            git_commit=self.request.git_commit,
            duration=self.ports.clock.monotonic() - self.started,
            **kw,  # type: ignore[arg-type]
        )

    def _next_state(
        self,
        flaps: Mapping[flap.Key, flap.FlapRecord],
        observed: Observed | None = None,
        ids: set[str] | None = None,
        applied: ApplyResult | None = None,
        *,
        halted: Mapping[rollout.RolloutKey, rollout.Halt] | None = None,
    ) -> CycleState:
        backoff = dict(self.state.backoff)
        if self.request.backoff is not None and observed is not None and ids is not None:
            backoff = self._backoff(backoff, self.request.backoff, observed, ids, applied or ApplyResult())
        halted = self.state.halted if halted is None else halted
        return CycleState(
            backoff=backoff, flap=flaps, names=self.names, halted=halted, unhealthy=self.unhealthy,
            health_written=self.health_written, plans=self.plans, listings=self.listings,
        )  # fmt: skip

    def _backoff(
        self,
        backoff: dict[str, BackoffState],
        policy: BackoffPolicy,
        observed: Observed,
        ids: set[str],
        applied: ApplyResult,
    ) -> dict[str, BackoffState]:
        """Back off environments that failed this cycle (unreachable while active, or a step failed), reset
        those that worked; only failing ones are kept."""
        failed_steps: dict[str, str] = {}
        for r in applied.results:
            if r.outcome == StepOutcome.FAILED:
                failed_steps.setdefault(r.step.environment_id, f"{r.step.action} {r.step.server}: {r.message}")
        active = {e.id for e in observed.recorded.environments if e.status == "active"}
        now = self.ports.clock.monotonic()
        for env_id in sorted(ids):
            live = observed.live.get(env_id)
            name = self.names.get(env_id, env_id)
            problem = None
            if isinstance(live, Unreachable) and env_id in active:
                problem = f"unreachable: {live.reason}"
            elif env_id in failed_steps:
                problem = failed_steps[env_id]
            if problem is None and env_id not in backoff:
                continue  # fine now and before: nothing to reset (most toolboxes, every cycle)
            current = backoff.get(env_id, BackoffState())
            if problem is None:
                if current.backing_off:
                    log.info("environment %s recovered; backoff reset", name, extra={"environment": name})
                backoff[env_id] = succeeded(current)
                continue
            new = failed(current, policy, now, self.hooks.rand(), problem)
            backoff[env_id] = new
            log.warning(
                "environment %s failed %d time(s) in a row (%s); next attempt in %.0fs",
                name, new.failures, problem, new.retry_at - now,
                extra={"environment": name, "outcome": "backing-off"},
            )  # fmt: skip
        return {k: v for k, v in backoff.items() if v.backing_off}


def same_listings(observed: Observed, last: Mapping[str, LiveListing]) -> tuple[Observed, dict[str, LiveListing]]:
    """``observed`` with each listing equal to the toolbox's last one replaced by that very object, and the
    listings to remember. The values are the same; what the cycle keeps by toolbox (the plan's parts, the
    status page's entries) then finds its listing by identity instead of comparing ten containers field by
    field, and the fresh copies are freed at once instead of outliving the cycle."""
    live = dict(observed.live)
    kept: dict[str, LiveListing] = {}
    for env_id, listing in observed.live.items():
        if not isinstance(listing, LiveListing):
            continue
        old = last.get(env_id)
        same = old is not None and (old is listing or old == listing)
        live[env_id] = kept[env_id] = old if same and old is not None else listing
    return replace(observed, live=live), kept


def lock_holder(store: Store, environment_id: str) -> str:
    """Who holds an environment's lock, as the store can tell (``pid N on host H``), else a plain phrase."""
    return store.lock_holder(environment_id) or "another process"
