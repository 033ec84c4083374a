"""One daemon tick: re-read the manifests (keeping the last good state), then the one cycle.

Everything the daemon remembers between ticks is the ``DaemonState`` value passed in and returned: the
cycle's memory (backoff, flap guard, names), the last good manifests, the manifests' commit, the secret
values the journal already redacts, and whether the manifests and the database were fine last time (so that
their recovery is logged once, at INFO).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from reconciler.core.backoff import BackoffPolicy
from reconciler.core.plan import Policy
from reconciler.errors import ConfigError, StoreError
from reconciler.ports import Clock, Dtma, Git, Journal, Prober, Store
from reconciler.runtime.cycle import CycleHooks, CyclePorts, CycleReport, CycleRequest, CycleState, run_cycle
from reconciler.runtime.desired_state import DesiredMemory, Loaded, load_desired
from reconciler.runtime.replicas import LEASE_INTERVALS, ReplicaShare
from reconciler.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DaemonConfig:
    paths: tuple[str, ...]
    interval: float = 30.0  # seconds
    jitter: float = 0.1  # fraction of interval (0.1 = each cycle delayed by up to 10% of it)
    listen: str | None = None  # "127.0.0.1:9464"; None = no HTTP
    once: bool = False  # one cycle then return
    env_filter: tuple[str, ...] | None = None
    git_pull: bool = False
    stop_timeout: float = 30.0  # bound on letting the running step finish after SIGTERM
    allow_remote_listen: bool = False  # serve --listen on a non-loopback address
    prune: bool = False  # --prune: every environment acts as if its manifest said policy.prune: true
    adopt: bool = False  # --adopt: every environment acts as if its manifest said policy.adopt: true
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    flap_threshold: int = 2  # same step needed again this many times after applying it -> stalled
    retention_interval: float = 3600.0  # seconds between journal retention runs
    # Reconcile now: a trigger with no cycle running starts one this many seconds later, and every trigger
    # until then folds into it, so a burst of pushes makes one cycle (still within a second of the first).
    trigger_settle: float = 0.25
    # This daemon's id among replicas sharing one PostgreSQL database (leases); None: it takes every
    # environment it can lock (``--once``, and SQLite, which serves one daemon anyway).
    replica: str | None = None


@dataclass(frozen=True)
class DaemonState:
    cycle: CycleState = field(default_factory=CycleState)
    desired: DesiredMemory = field(default_factory=DesiredMemory)
    loaded: Loaded | None = None  # the last load (a new value means the manifests changed)
    commit: str | None = None
    journal_secrets: frozenset[str] = field(default=frozenset(), repr=False)
    manifest_valid: bool = True
    database_ok: bool = True


@dataclass(frozen=True)
class TickPorts:
    store: Callable[[], Store]  # the open store, opened again after a failure; raises StoreError
    dtma: Dtma
    journal: Journal
    clock: Clock
    git: Git
    key: bytes = field(repr=False)
    sleep: Callable[[float], None] = time.sleep
    prober: Prober | None = None  # readiness probes; None: the container state only


def tick(  # noqa: PLR0917
    ports: TickPorts,
    settings: Settings,
    config: DaemonConfig,
    policy: Policy,
    environ: Mapping[str, str],
    state: DaemonState,
    hooks: CycleHooks,
) -> tuple[CycleReport, DaemonState]:
    """Never raises for a database, DTMA or manifest problem: the report says it."""
    started = ports.clock.monotonic()
    errors: list[str] = []
    paths = list(config.paths)
    if config.git_pull:
        problem = ports.git.pull(paths)
        if problem:
            log.warning("%s; acting on the tree as it is", problem, extra={"outcome": "git-pull-failed"})
            errors.append(problem)
    loaded, memory = load_desired(paths, environ, state.desired)
    if not loaded.valid:
        kept = f"; keeping the last good state of {', '.join(loaded.kept)}" if loaded.kept else ""
        log.error(
            "manifests are invalid%s:\n%s", kept, "\n".join(loaded.errors), extra={"outcome": "manifest-invalid"}
        )
        errors.extend(loaded.errors)
    elif not state.manifest_valid:
        log.info("manifests are valid again")
    secrets = frozenset(v for v in loaded.secret_values.values() if v)
    if secrets - state.journal_secrets:
        ports.journal.add_secrets(secrets - state.journal_secrets)
    commit = state.commit
    if config.git_pull or loaded is not state.loaded:
        # Asked of git only when the manifests changed (or were pulled): an idle cycle forks nothing.
        commit = ports.git.commit(paths)
    state = replace(
        state,
        desired=memory,
        loaded=loaded,
        commit=commit,
        journal_secrets=state.journal_secrets | secrets,
        manifest_valid=loaded.valid,
    )
    note = "daemon" if loaded.valid else "daemon; manifests invalid, acting on the last good state"
    request = CycleRequest(
        desired=loaded.desired,
        secret_values=loaded.secret_values,
        kind="apply",
        policy=policy,
        env_filter=config.env_filter,
        prune=config.prune,
        adopt=config.adopt,
        lock="skip",
        journal_idle=config.once,
        note=note,
        git_commit=commit,
        flap_threshold=config.flap_threshold,
        backoff=config.backoff,
        replica=(
            ReplicaShare(config.replica, LEASE_INTERVALS * config.interval)
            if config.replica is not None and not config.once
            else None
        ),
    )

    def failed_report(problem: str) -> CycleReport:
        errors.append(problem)
        return CycleReport(
            None,
            manifest_valid=loaded.valid,
            database_ok=not problem.startswith("database"),
            stalled=state.cycle.stalled(),
            errors=tuple(errors),
            git_commit=commit,
            duration=ports.clock.monotonic() - started,
        )

    try:
        store = ports.store()
        cycle_ports = CyclePorts(
            store, ports.dtma, ports.journal, ports.clock, ports.key, ports.sleep, prober=ports.prober
        )
        report, cycle_state = run_cycle(cycle_ports, settings, request, state.cycle, hooks)
    except StoreError as exc:
        log.error("database unreachable: %s", exc, extra={"outcome": "database-unreachable"})
        return failed_report(f"database unreachable: {exc}"), replace(state, database_ok=False)
    except ConfigError as exc:  # --env naming no environment of the manifests as they are now
        log.error("%s", exc)
        return failed_report(str(exc)), state
    if not state.database_ok:
        log.info("database reachable again")
    report = replace(
        report, manifest_valid=loaded.valid, errors=tuple(errors), duration=ports.clock.monotonic() - started
    )
    return report, replace(state, cycle=cycle_state, database_ok=True)
