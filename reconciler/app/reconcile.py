"""``plan`` and ``apply`` (and ``status``): open the ports for these settings, run the one cycle, close them."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler.app.stores import open_store
from reconciler.app.tuning import executor_config_for, policy_for
from reconciler.app.wiring import GitWorkTree, SystemClock, open_dtma, open_journal, open_prober, secret_key
from reconciler.core.health import mcp_state
from reconciler.core.observed import LiveListing, Observed, Unreachable
from reconciler.core.plan import Plan, Policy, Step
from reconciler.core.suspension import Suspension
from reconciler.core.verdict import Verdict
from reconciler.errors import StoreError
from reconciler.model.spec import Desired
from reconciler.ports import Dtma
from reconciler.runtime.cycle import CycleHooks, CyclePorts, CycleReport, CycleRequest, run_cycle
from reconciler.runtime.execute import ExecutorConfig, StepResult
from reconciler.runtime.observe import observe
from reconciler.runtime.prefetch import PrefetchingDtma, likely_targets
from reconciler.runtime.saved_plan import Basis
from reconciler.settings import Settings

if TYPE_CHECKING:
    from reconciler.app.stores import AnyStore
    from reconciler.model.loader import ReadAhead

APPLY_LOCK_WAIT = 30.0  # seconds apply waits for an environment another process is reconciling

RunResult = CycleReport  # what plan and apply return: the cycle's report


def reconcile_once(
    settings: Settings,
    paths: Sequence[str],
    *,
    apply: bool,
    env_filter: Sequence[str] | None = None,
    policy: Policy | None = None,
    saved_basis: Basis | None = None,
    want_basis: bool = False,
    environ: Mapping[str, str] | None = None,
    on_step: Callable[[StepResult], None] | None = None,
    executor_config: ExecutorConfig | None = None,
    sleep: Callable[[float], None] = time.sleep,
    lock_wait: float = APPLY_LOCK_WAIT,
    desired: Desired | None = None,
    servers: Sequence[str] | None = None,
    refresh: bool = True,
    saved_steps: tuple[tuple[str, str, str], ...] | None = None,
    approve: Callable[[Plan, Verdict, Observed], bool] | None = None,
    on_start: Callable[[Step], None] | None = None,
    adopt: bool = False,
) -> CycleReport:
    """One plan (``apply=False``) or apply run, journalled. ``desired`` (a saved plan's) replaces reading
    ``paths``. Raises ManifestError, StoreError, PlanError (a stale saved plan), LockHeldError (an environment
    stayed locked by another process for ``lock_wait``)."""
    from reconciler.model.loader import load_manifests, read_ahead, resolve_secrets

    early: tuple[AnyStore, PrefetchingDtma] | None = None
    if desired is None:
        read: ReadAhead | None = None
        if not apply and refresh:
            read = read_ahead(list(paths))  # once, for the hints and the load
            early = _list_ahead(settings, read, env_filter)
        try:
            desired = load_manifests(list(paths), read=read)
        except BaseException:
            if early is not None:
                early[1].close()
                early[0].close()
            raise
    values = resolve_secrets(desired, os.environ if environ is None else environ)
    clock = SystemClock()
    store = early[0] if early is not None else open_store(settings.database_url)
    dtma: Dtma = early[1] if early is not None else open_dtma(settings)
    try:
        key = secret_key(settings, store)
        journal = open_journal(settings, values.values())
    except BaseException:
        dtma.close()
        store.close()
        raise
    prober = open_prober(settings, values.values()) if refresh and settings.readiness else None
    try:
        request = CycleRequest(
            desired=desired,
            secret_values=values,
            kind="apply" if apply else "plan",
            policy=policy_for(settings, policy),
            env_filter=tuple(env_filter) if env_filter else None,
            lock="wait" if apply else "none",
            lock_wait=lock_wait,
            git_commit=GitWorkTree().commit(list(paths)) if paths else None,
            saved_basis=saved_basis,
            want_basis=want_basis,
            servers=tuple(servers) if servers else None,
            refresh=refresh,
            saved_steps=saved_steps,
            adopt=adopt,
        )
        ports = CyclePorts(store, dtma, journal, clock, key, sleep, prober=prober)
        report, _ = run_cycle(
            ports,
            settings,
            request,
            hooks=CycleHooks(
                on_step=on_step,
                executor_config=executor_config_for(settings, executor_config),
                approve=approve,
                on_start=on_start,
            ),
        )
        if apply:
            journal.prune(
                clock.now(),
                max_age=timedelta(days=settings.journal_max_age_days),
                keep_runs=settings.journal_keep_runs,
            )
        return report
    finally:
        dtma.close()
        if prober is not None:
            prober.close()
        store.close()
        journal.close()


def _list_ahead(
    settings: Settings, read: ReadAhead, env_filter: Sequence[str] | None
) -> tuple[AnyStore, PrefetchingDtma] | None:
    """For ``plan``: the store opened and the listings of the toolboxes the manifests most likely declare
    started before the manifests are loaded, so the agents answer while the loading runs. Nothing is started
    when the database cannot be read yet: the cycle reports that after the manifests are checked."""
    try:
        store = open_store(settings.database_url)
    except StoreError:
        return None
    try:
        hints = read.environment_hints()
        if env_filter:
            hints = frozenset(h for h in hints if h in env_filter)
        targets = likely_targets(store.observe_environments(), hints, settings) if hints else []
    except StoreError:
        store.close()
        return None
    dtma = PrefetchingDtma(open_dtma(settings))
    dtma.prefetch(targets)
    return store, dtma


def step_line(result: StepResult) -> dict[str, Any]:
    """One step's result as a flat dict (for the JSON progress lines); carries no secret values."""
    s = result.step
    return {
        "environment": s.environment_name,
        "server": s.server,
        "action": str(s.action),
        "outcome": str(result.outcome),
        "message": result.message,
        "status_code": result.status_code,
    }


def health_fields(metadata: Mapping[str, Any] | None, live: str = "running") -> dict[str, Any]:
    """``status``'s view of the last readiness probe a cycle recorded for a server (None: never probed). The
    recorded health holds only while the container is seen running: for one that is not, or a toolbox that
    could not be listed, the health is the mapping's for what was seen (``unknown`` when nothing was), never
    a past probe's "healthy"."""
    if metadata is None:
        return {"health": None, "probe": None}
    probe = metadata.get("last_probe") or {}
    return {
        "health": metadata.get("health") if live == "running" else mcp_state(live)[1],
        "probe": {
            "at": probe.get("at"),
            "ok": probe.get("ok"),
            "error": probe.get("error"),
            "readiness": metadata.get("readiness"),
            "protocol_version": metadata.get("protocol_version"),
            "server": " ".join(filter(None, [metadata.get("server_name"), metadata.get("server_version")]))
            or None,
            "tools": metadata.get("tools") or [],
        },
    }


def _suspension(found: Suspension | None) -> dict[str, str] | None:
    if found is None:
        return None
    return {"reason": found.reason, "by": found.by, "at": found.at.isoformat()}


def last_steps(settings: Settings, journal_path: str | None = None) -> dict[tuple[str, str], str]:
    """(environment, server) -> its last journalled step, as one line."""
    from reconciler.adapters.journal import Journal

    last: dict[tuple[str, str], str] = {}
    path = Path(journal_path or settings.journal_path)
    if path.exists():
        journal = Journal(path, read_only=True)
        try:
            for s in journal.steps():
                last[(s.environment, s.server)] = f"{s.action} {s.outcome or 'pending'} at {s.intent_at}"
        finally:
            journal.close()
    return last


def status_rows(settings: Settings, journal_path: str | None = None) -> list[dict[str, Any]]:
    """Per environment and server: recorded status, live state, the last journalled step, and the
    environment's suspension (``{reason, by, at}``) or None. The desired state shown is the one recorded at
    the last apply (``desired_from: recorded``); ``status_against`` compares with manifests."""
    store = open_store(settings.database_url)
    dtma = open_dtma(settings)
    try:
        observed = observe(store, dtma, settings)
        probes = store.recorded_health()
        suspended = {s.environment_id: s for s in store.suspensions()}
    finally:
        dtma.close()
        store.close()
    last = last_steps(settings, journal_path)
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
                **health_fields(probes.get(inst.id) if inst else None, container.state if container else "absent"),
                "suspended": _suspension(suspended.get(env.id)),
                "desired_from": "recorded",
            })  # fmt: skip
    return rows
