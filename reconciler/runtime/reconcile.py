"""One reconcile cycle: load, observe, plan, and (when asked) apply, journalled. Used by the CLI and daemon.

This is the one place that builds concrete adapters from settings.
"""

from __future__ import annotations

import os
import secrets as _secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from reconciler.adapters.dtma_client import DtmaClient
from reconciler.adapters.journal import Journal
from reconciler.core.observed import LiveListing, Observed, Unreachable
from reconciler.core.outcomes import RunOutcome
from reconciler.core.plan import NoticeKind, Plan, Policy, Step
from reconciler.errors import PlanError
from reconciler.model.spec import Desired
from reconciler.ports import Clock, Dtma, Store
from reconciler.runtime.execute import ApplyResult, Executor, ExecutorConfig, StepResult
from reconciler.runtime.git_info import manifest_commit
from reconciler.runtime.observe import listed_instance_ids, observe, targets_for
from reconciler.runtime.saved_plan import Basis, basis_of, check_basis
from reconciler.settings import Settings
from reconciler.state_dir import make_state_dir

DEFAULT_POLICY = Policy()
DEFAULT_EXECUTOR = ExecutorConfig()


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()


@dataclass(frozen=True)
class RunResult:
    run_id: int
    plan: Plan
    observed: Observed
    basis: Basis | None  # only when asked for (a plan to save) or checked (a saved plan to apply)
    applied: ApplyResult | None = None

    @property
    def outcome(self) -> RunOutcome:
        """Converged, partial, or nothing applied (an error or a refusal); the CLI maps it to an exit code."""
        if self.applied is None:
            return RunOutcome.NOTHING_APPLIED
        results = self.applied.results
        if any(r.outcome == "failed" for r in results):
            return RunOutcome.PARTIAL if self.applied.applied_any else RunOutcome.NOTHING_APPLIED
        refused = any(n.kind is NoticeKind.REFUSED for n in self.plan.notices)
        if self.plan.errors or (refused and not self.applied.applied_any):
            return RunOutcome.NOTHING_APPLIED
        return RunOutcome.PARTIAL if refused else RunOutcome.CONVERGED


def secret_key(settings: Settings) -> bytes:
    """The HMAC key for secret fingerprints: settings, else a key file made once beside the journal."""
    if settings.secret_key:
        return settings.secret_key.reveal().encode()
    path = Path(settings.journal_path).parent / "secret.key"
    if not path.exists():
        make_state_dir(path.parent)  # .reconciler/ gets its .gitignore
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it first
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(_secrets.token_hex(32))
    return path.read_text().strip().encode()


def open_dtma(settings: Settings) -> DtmaClient:
    """The DTMA client for these settings; keep it across cycles so its connection pool is reused."""
    return DtmaClient(
        connect_timeout=settings.dtma_connect_timeout,
        read_timeout=settings.dtma_read_timeout,
        call_deadline=settings.dtma_call_deadline,
        deploy_timeout=settings.dtma_deploy_timeout,
        concurrency=settings.dtma_concurrency,
        verify=settings.dtma_verify,
    )


def execute_plan(
    the_plan: Plan,
    *,
    store: Store,
    dtma: Dtma,
    journal: Journal,
    run_id: int,
    settings: Settings,
    observed: Observed,
    secret_values: Mapping[str, str],
    secret_fingerprints: Mapping[str, str],
    clock: Clock,
    sleep: Callable[[float], None] = time.sleep,
    executor_config: ExecutorConfig = DEFAULT_EXECUTOR,
    on_step: Callable[[StepResult], None] | None = None,
    gate: Callable[[Step], str | None] | None = None,
) -> ApplyResult:
    """Apply a plan's steps (none when the plan has errors): the apply half shared by ``reconcile_once``
    and the daemon. ``gate`` may veto a step just before it starts (daemon stopping, lock lost)."""
    store.record_heartbeats(listed_instance_ids(observed), clock.now())
    if the_plan.errors:
        return ApplyResult()
    executor = Executor(
        store=store,
        dtma=dtma,
        targets=targets_for(observed.recorded, settings),
        journal=journal,
        run_id=run_id,
        clock=clock,
        sleep=sleep,
        secret_values=secret_values,
        secret_fingerprints=secret_fingerprints,
        config=replace(executor_config, global_concurrency=settings.apply_concurrency),
        on_step=on_step,
        gate=gate,
    )
    return executor.apply(the_plan.steps)


def _filter(desired: Desired, env_filter: Sequence[str] | None) -> Desired:
    if not env_filter:
        return desired
    return replace(desired, environments=tuple(e for e in desired.environments if e.environment in env_filter))


def reconcile_once(
    settings: Settings,
    paths: Sequence[str],
    *,
    apply: bool,
    env_filter: Sequence[str] | None = None,
    policy: Policy = DEFAULT_POLICY,
    saved_basis: Basis | None = None,
    want_basis: bool = False,
    environ: Mapping[str, str] | None = None,
    on_step: Callable[[StepResult], None] | None = None,
    executor_config: ExecutorConfig = DEFAULT_EXECUTOR,
    sleep: Callable[[float], None] = time.sleep,
) -> RunResult:
    from reconciler.core.planner import plan as make_plan
    from reconciler.model.loader import load_manifests, resolve_secrets, secret_fingerprints
    from reconciler.runtime.stores import open_store

    clock = SystemClock()
    desired = _filter(load_manifests(list(paths)), env_filter)
    values = resolve_secrets(desired, os.environ if environ is None else environ)
    fingerprints = secret_fingerprints(values, secret_key(settings))
    journal = Journal(settings.journal_path, secrets=[v for v in values.values() if v])
    store = open_store(settings.database_url)
    dtma = open_dtma(settings)
    try:
        # Agentopia's unique (environment, catalog) pair may be absent on a given database.
        policy = replace(policy, one_instance_per_image=store.unique_image_per_environment)
        wanted = [e.environment for e in desired.environments]
        observed = observe(store, dtma, settings, environment_ids=wanted if env_filter else None)
        the_plan: Plan = make_plan(desired, observed, policy, clock.now(), fingerprints)
        basis = None
        if want_basis or saved_basis is not None:
            # One fingerprint query per toolbox: paid only by `plan --out` and `apply plan.json`.
            touched = {e.id for e in observed.recorded.environments if e.id in observed.live}
            basis = basis_of(desired.digest, store, observed, touched)
        note = f"allow-mass-delete: {policy.allow_mass_delete}" if policy.allow_mass_delete else None
        run_id = journal.start_run(
            "apply" if apply else "plan",
            clock.now(),
            manifest_digest=desired.digest,
            git_commit=manifest_commit(list(paths)),
            note=note,
        )
        if not apply:
            journal.finish_run(run_id, clock.now(), "changes" if the_plan.steps else "no-changes")
            return RunResult(run_id, the_plan, observed, basis)
        if saved_basis is not None and basis is not None:
            try:
                check_basis(saved_basis, basis)
            except PlanError:
                journal.finish_run(run_id, clock.now(), "refused")
                raise
        applied = execute_plan(
            the_plan,
            store=store,
            dtma=dtma,
            journal=journal,
            run_id=run_id,
            settings=settings,
            observed=observed,
            secret_values=values,
            secret_fingerprints=fingerprints,
            clock=clock,
            sleep=sleep,
            executor_config=executor_config,
            on_step=on_step,
        )
        result = RunResult(run_id, the_plan, observed, basis, applied)
        journal.finish_run(run_id, clock.now(), result.outcome)
        journal.prune(
            clock.now(),
            max_age=timedelta(days=settings.journal_max_age_days),
            keep_runs=settings.journal_keep_runs,
        )
        return result
    finally:
        dtma.close()
        store.close()
        journal.close()


def step_line(result: StepResult) -> dict[str, Any]:
    """One step's result as a flat dict (for the JSON progress lines); carries no secret values."""
    s = result.step
    return {
        "environment": s.environment_name,
        "server": s.server,
        "action": str(s.action),
        "outcome": result.outcome,
        "message": result.message,
        "status_code": result.status_code,
    }


def status_rows(settings: Settings, journal_path: str | None = None) -> list[dict[str, Any]]:
    """Per environment and server: recorded status, live state and the last journalled step."""
    from reconciler.runtime.stores import open_store

    store = open_store(settings.database_url)
    dtma = open_dtma(settings)
    try:
        observed = observe(store, dtma, settings)
    finally:
        dtma.close()
        store.close()
    last: dict[tuple[str, str], str] = {}
    path = Path(journal_path or settings.journal_path)
    if path.exists():
        journal = Journal(path, read_only=True)
        try:
            for s in journal.steps():
                last[(s.environment, s.server)] = f"{s.action} {s.outcome or 'pending'} at {s.intent_at}"
        finally:
            journal.close()
    rows: list[dict[str, Any]] = []
    for env in observed.recorded.environments:
        live = observed.live.get(env.id)
        by_name = live.by_name() if isinstance(live, LiveListing) else {}
        names = {i.name for i in observed.recorded.instances if i.environment_id == env.id and i.name}
        names |= set(by_name)
        recorded = {i.name: i for i in observed.recorded.instances if i.environment_id == env.id}
        for name in sorted(names):
            inst = recorded.get(name)
            container = by_name.get(name)
            rows.append({
                "environment": env.name or env.id,
                "server": name,
                "managed": bool(inst and inst.managed),
                "desired_state": (inst.config.get("desired_state") if inst else None),
                "recorded": inst.status if inst else None,
                "live": container.state if container else
                ("unreachable: " + live.reason if isinstance(live, Unreachable) else "absent"),
                "last_step": last.get((env.name or env.id, name)),
            })  # fmt: skip
    return rows
