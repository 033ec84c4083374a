"""``reconciler run``: the long-running reconciler (DESIGN section 9, issue 6).

Every cycle is level-triggered: re-read the manifests (keeping the last good state of an environment whose
manifest broke), lock each environment (a PostgreSQL advisory lock, so replicas split the toolboxes), observe
the locked ones, plan, drop the steps of stalled servers (flap guard), apply, journal, then release the
locks. A toolbox that keeps failing backs off on its own. APScheduler fires the cycles; SIGTERM/SIGINT stop
scheduling, let the running step finish (bounded) and journal the stop.

Journalling: a cycle is journalled (as an ``apply`` run with note ``daemon``) only when its plan has steps,
and a ``daemon-check`` run is written when the daemon's health changes (manifest invalid, database down,
git pull failed, and back). Idle cycles write nothing, so the journal does not grow every 30 s.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from types import FrameType
from typing import TYPE_CHECKING

from reconciler.adapters.journal import Journal
from reconciler.core import flap
from reconciler.core.backoff import BackoffPolicy, BackoffState, failed, succeeded
from reconciler.core.observed import Observed, RecordedEnvironment, Unreachable
from reconciler.core.plan import Plan, Policy, Step
from reconciler.core.planner import plan as make_plan
from reconciler.errors import LockHeldError, SchemaMissingError, StoreError
from reconciler.model.loader import environment_key, secret_fingerprints
from reconciler.model.spec import Desired
from reconciler.ports import Clock
from reconciler.runtime.desired_state import DesiredState, Loaded
from reconciler.runtime.execute import ApplyResult, ExecutorConfig, StepResult
from reconciler.runtime.git_info import git_pull, manifest_commit
from reconciler.runtime.metrics import CONTENT_TYPE, DaemonMetrics
from reconciler.runtime.observe import observe
from reconciler.runtime.reconcile import (
    DEFAULT_EXECUTOR,
    DEFAULT_POLICY,
    SystemClock,
    execute_plan,
    open_dtma,
    secret_key,
)
from reconciler.settings import Settings, mask_url

if TYPE_CHECKING:
    from reconciler.runtime.stores import AnyStore

log = logging.getLogger(__name__)

READY_FACTOR = 3.0  # /readyz wants a cycle within this many intervals


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
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    flap_threshold: int = 2  # same step needed again this many times after applying it -> stalled
    retention_interval: float = 3600.0  # seconds between journal retention runs


@dataclass(frozen=True)
class CycleReport:
    run_id: int | None
    plan: Plan | None
    results: tuple[StepResult, ...]
    manifest_valid: bool
    database_ok: bool
    backing_off: tuple[str, ...]
    locked_elsewhere: tuple[str, ...]
    stalled: tuple[str, ...]  # "environment/server"
    duration: float
    unreachable: tuple[str, ...] = ()
    acted_on: tuple[str, ...] = ()  # environments locked and observed this cycle
    errors: tuple[str, ...] = ()  # manifest, database and git problems, one line each
    git_commit: str | None = None

    @property
    def failed(self) -> tuple[StepResult, ...]:
        return tuple(r for r in self.results if r.outcome == "failed")

    @property
    def ok(self) -> bool:
        """Database reached, manifests valid and no step failed."""
        return self.database_ok and self.manifest_valid and not self.failed


class Daemon:
    def __init__(
        self,
        settings: Settings,
        config: DaemonConfig,
        *,
        policy: Policy = DEFAULT_POLICY,
        environ: Mapping[str, str] | None = None,
        on_step: Callable[[StepResult], None] | None = None,
        on_cycle: Callable[[CycleReport], None] | None = None,
        clock: Clock | None = None,
        executor_config: ExecutorConfig = DEFAULT_EXECUTOR,
        rng: random.Random | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Opens the journal and the store. With SQLite, takes the one-daemon-per-file lock: a second
        daemon raises LockHeldError here. A PostgreSQL server that is down is retried every cycle."""
        self.settings, self.config, self.policy = settings, config, policy
        self.clock: Clock = clock or SystemClock()
        self.metrics = DaemonMetrics()
        self._environ = os.environ if environ is None else environ
        self._on_step = on_step
        self._on_cycle = on_cycle
        self._executor_config = executor_config
        self._rng = rng or random.Random()
        self._sleep = sleep
        self._desired = DesiredState(config.paths, self._environ)
        self._key = secret_key(settings)
        self._journal = Journal(settings.journal_path)
        self._journal_secrets: set[str] = set()
        self._store: AnyStore | None = None
        self._store_error: str | None = None
        try:
            self._open_first_store()
        except BaseException:
            self._journal.close()
            raise
        self._dtma = open_dtma(settings)  # one client, one connection pool, for the daemon's life
        self._backoff: dict[str, BackoffState] = {}
        self._flap: dict[flap.Key, flap.FlapRecord] = {}
        self._names: dict[str, str] = {}  # environment id -> name, for reports
        self._stop = threading.Event()
        self._cycle_lock = threading.Lock()
        self._idle = threading.Event()
        self._idle.set()
        self._current_run: int | None = None
        self._last_loaded: Loaded | None = None
        self._commit: str | None = None
        self._health: str | None = None  # the last journalled health condition
        self.last_report: CycleReport | None = None
        self.last_cycle_end: float | None = None  # clock.monotonic() at the end of the last cycle
        self.cycle_finished = threading.Event()  # set after every cycle (tests and embedders wait on it)
        self.http_address: str | None = None  # host:port actually served by --listen (port 0 = any)
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------------------

    def _open_store(self) -> AnyStore:
        if self._store is not None:
            return self._store
        from reconciler.runtime.stores import open_store

        store = open_store(self.settings.database_url)
        try:
            store.acquire_daemon_lock()  # SQLite: one daemon per file; PostgreSQL: nothing to do
        except StoreError:
            store.close()
            raise
        self._store = store
        self._store_error = None
        return store

    def _open_first_store(self) -> None:
        from reconciler.runtime.stores import parse_database_url

        try:
            self._open_store()
        except (SchemaMissingError, LockHeldError):
            raise
        except StoreError as exc:
            if parse_database_url(self.settings.database_url).kind == "sqlite":
                raise
            self._store_error = str(exc)
            log.warning("database not reachable yet (retried every cycle): %s", exc)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._dtma.close()
        if self._store is not None:
            self._store.close()
            self._store = None
        self._journal.close()

    def __enter__(self) -> Daemon:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stop(self) -> None:
        """Ask the daemon to stop: no new cycle or step starts; the running step finishes. Thread-safe."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # -- readiness ---------------------------------------------------------------------------------------

    def readiness(self) -> tuple[bool, str]:
        """Ready when the last cycle reached the database and ended within READY_FACTOR intervals."""
        report, end = self.last_report, self.last_cycle_end
        if report is None or end is None:
            return False, "no cycle has finished yet"
        if not report.database_ok:
            return False, "database unreachable: " + (self._store_error or "see the log")
        age = self.clock.monotonic() - end
        limit = READY_FACTOR * self.config.interval * (1 + self.config.jitter)
        if age > limit:
            return False, f"last cycle ended {age:.0f}s ago (limit {limit:.0f}s)"
        return True, "ready"

    # -- one cycle ---------------------------------------------------------------------------------------

    def cycle(self) -> CycleReport:
        """One reconcile pass. Never raises for a database, DTMA or manifest problem: it reports it."""
        with self._cycle_lock:
            self._idle.clear()
            started = self.clock.monotonic()
            try:
                report = self._cycle(started)
            finally:
                self._idle.set()
            self._record(report)
            if self._on_cycle is not None:
                self._on_cycle(report)
            self.cycle_finished.set()
            return report

    def _cycle(self, started: float) -> CycleReport:
        errors: list[str] = []
        if self.config.git_pull:
            problem = git_pull(self.config.paths)
            if problem:
                log.warning("%s; acting on the tree as it is", problem)
                errors.append(problem)
        loaded = self._desired.load()
        if not loaded.valid:
            kept = f"; keeping the last good state of {', '.join(loaded.kept)}" if loaded.kept else ""
            log.error("manifests are invalid%s:\n%s", kept, "\n".join(loaded.errors))
            errors.extend(loaded.errors)
        self._add_secrets(loaded)
        desired = loaded.desired
        if self.config.env_filter:
            wanted = set(self.config.env_filter)
            desired = replace(
                desired, environments=tuple(e for e in desired.environments if e.environment in wanted)
            )
        if self.config.prune:
            desired = replace(
                desired,
                environments=tuple(replace(e, policy=replace(e.policy, prune=True)) for e in desired.environments),
            )
        if self.config.git_pull or loaded is not self._last_loaded:
            # Asked of git only when the manifests changed (or were pulled): an idle cycle forks nothing.
            self._commit = manifest_commit(list(self.config.paths))
            self._last_loaded = loaded
        commit = self._commit

        def report(**kw: object) -> CycleReport:
            base: dict[str, object] = {
                "run_id": None, "plan": None, "results": (), "manifest_valid": loaded.valid,
                "database_ok": True, "backing_off": (), "locked_elsewhere": (), "stalled": self._stalled_names(),
                "duration": self.clock.monotonic() - started, "errors": tuple(errors), "git_commit": commit,
            }  # fmt: skip
            base.update(kw)
            return CycleReport(**base)  # type: ignore[arg-type]

        try:
            store = self._open_store()
            rows = store.observe_environments()
        except StoreError as exc:
            self._store_error = str(exc)
            log.error("database unreachable: %s", exc)
            errors.append(f"database unreachable: {exc}")
            return report(database_ok=False)
        return self._act(store, rows, desired, loaded, errors, commit, report)

    def _act(  # noqa: PLR0917
        self,
        store: AnyStore,
        rows: Sequence[RecordedEnvironment],
        desired: Desired,
        loaded: Loaded,
        errors: list[str],
        commit: str | None,
        report: Callable[..., CycleReport],
    ) -> CycleReport:
        by_key: dict[str, RecordedEnvironment] = {}
        for row in sorted(rows, key=lambda r: r.id):
            by_key.setdefault(environment_key(row.id), row)
            if row.name:
                by_key.setdefault(row.name, row)
        now = self.clock.monotonic()
        backing_off: list[str] = []
        elsewhere: list[str] = []
        locked: list[RecordedEnvironment] = []
        specs = []
        try:
            for spec in desired.environments:
                found = by_key.get(environment_key(spec.environment))
                if found is None:
                    specs.append(spec)  # the planner explains "not in the database"
                    continue
                row = found
                self._names[row.id] = row.name or row.id
                if self.stopping:
                    break
                if not self._backoff.get(row.id, BackoffState()).due(now):
                    backing_off.append(row.name or row.id)
                    continue
                if not store.try_lock_environment(row.id):
                    elsewhere.append(row.name or row.id)
                    continue
                locked.append(row)
                specs.append(spec)
            if self.stopping:
                return report(backing_off=tuple(backing_off), locked_elsewhere=tuple(elsewhere))
            ids = {r.id for r in locked}
            # The rows read for locking are the observation's: the table is not read twice per cycle.
            observed = observe(store, self._dtma, self.settings, environment_ids=ids, environments=rows)
            policy = replace(self.policy, one_instance_per_image=store.unique_image_per_environment)
            fingerprints = secret_fingerprints(loaded.secret_values, self._key)
            the_plan = make_plan(
                replace(desired, environments=tuple(specs)), observed, policy, self.clock.now(), fingerprints
            )
            the_plan, self._flap = flap.guard(self._flap, the_plan, ids, self.config.flap_threshold)
            run_id, applied = self._apply(store, the_plan, observed, loaded, commit, fingerprints)
            unreachable = self._update_backoff(observed, ids, applied)
            self._flap = flap.after_apply(self._flap, (r.step for r in applied.results if r.outcome == "ok"))
            return report(
                run_id=run_id,
                plan=the_plan,
                results=applied.results,
                backing_off=tuple(sorted(backing_off)),
                locked_elsewhere=tuple(sorted(elsewhere)),
                stalled=self._stalled_names(),
                unreachable=tuple(sorted(unreachable)),
                acted_on=tuple(sorted(r.name or r.id for r in locked)),
            )
        except StoreError as exc:
            self._store_error = str(exc)
            log.error("database error during the cycle: %s", exc)
            errors.append(f"database unreachable: {exc}")
            return report(
                database_ok=False,
                backing_off=tuple(sorted(backing_off)),
                locked_elsewhere=tuple(sorted(elsewhere)),
            )
        finally:
            for row in locked:
                try:
                    store.unlock_environment(row.id)
                except StoreError:
                    log.debug("unlocking %s failed (the lock goes with the connection)", row.id)

    def _apply(  # noqa: PLR0917
        self,
        store: AnyStore,
        the_plan: Plan,
        observed: Observed,
        loaded: Loaded,
        commit: str | None,
        fingerprints: Mapping[str, str],
    ) -> tuple[int | None, ApplyResult]:
        if not the_plan.steps or self.stopping:
            return None, ApplyResult()
        note = "daemon" if loaded.valid else "daemon; manifests invalid, acting on the last good state"
        if self.policy.allow_mass_delete:
            note += f"; allow-mass-delete: {self.policy.allow_mass_delete}"
        run_id = self._journal.start_run(
            "apply", self.clock.now(), manifest_digest=the_plan.manifest_digest, git_commit=commit, note=note
        )
        self._current_run = run_id

        def gate(step: Step) -> str | None:
            if self.stopping:
                return "not started: the daemon is stopping"
            if store.lock_lost():
                return "not started: the database connection holding the environment locks was lost"
            return None

        try:
            applied = execute_plan(
                the_plan,
                store=store,
                dtma=self._dtma,
                journal=self._journal,
                run_id=run_id,
                settings=self.settings,
                observed=observed,
                secret_values=loaded.secret_values,
                secret_fingerprints=fingerprints,
                clock=self.clock,
                sleep=self._sleep,
                executor_config=self._executor_config,
                on_step=self._on_step,
                gate=gate,
            )
        finally:
            self._current_run = None
        outcomes = {r.outcome for r in applied.results}
        outcome = (
            "nothing-applied" if the_plan.errors or not applied.results
            else "partial" if "failed" in outcomes and "ok" in outcomes
            else "failed" if "failed" in outcomes
            else "stopped" if self._stop.is_set() and "skipped" in outcomes
            else "converged"
        )  # fmt: skip
        self._journal.finish_run(run_id, self.clock.now(), outcome)
        return run_id, applied

    def _update_backoff(self, observed: Observed, ids: set[str], applied: ApplyResult) -> list[str]:
        """Back off environments that failed this cycle, reset those that worked; returns the unreachable."""
        failed_steps: dict[str, str] = {}
        for r in applied.results:
            if r.outcome == "failed":
                failed_steps.setdefault(r.step.environment_id, f"{r.step.action} {r.step.server}: {r.message}")
        active = {e.id for e in observed.recorded.environments if e.status == "active"}
        unreachable: list[str] = []
        now = self.clock.monotonic()
        for env_id in sorted(ids):
            live = observed.live.get(env_id)
            name = self._names.get(env_id, env_id)
            problem = None
            if isinstance(live, Unreachable) and env_id in active:
                unreachable.append(name)
                problem = f"unreachable: {live.reason}"
            elif env_id in failed_steps:
                problem = failed_steps[env_id]
            state = self._backoff.get(env_id, BackoffState())
            if problem is None:
                if state.backing_off:
                    log.info("environment %s recovered; backoff reset", name)
                self._backoff[env_id] = succeeded(state)
                continue
            new = failed(state, self.config.backoff, now, self._rng.random(), problem)
            self._backoff[env_id] = new
            log.warning(
                "environment %s failed %d time(s) in a row (%s); next attempt in %.0fs",
                name, new.failures, problem, new.retry_at - now,
            )  # fmt: skip
        self._backoff = {k: v for k, v in self._backoff.items() if v.backing_off}
        return unreachable

    def backoff_state(self) -> dict[str, BackoffState]:
        """Environments in backoff, by name."""
        return {self._names.get(k, k): v for k, v in self._backoff.items()}

    def _stalled_names(self) -> tuple[str, ...]:
        return tuple(f"{self._names.get(env, env)}/{server}" for env, server in flap.stalled(self._flap))

    def _add_secrets(self, loaded: Loaded) -> None:
        new = {v for v in loaded.secret_values.values() if v} - self._journal_secrets
        if new:
            self._journal.add_secrets(new)
            self._journal_secrets |= new

    # -- reporting -----------------------------------------------------------------------------------------

    def _record(self, report: CycleReport) -> None:
        self.last_report = report
        self.last_cycle_end = self.clock.monotonic()
        m = self.metrics
        m.cycle_duration.observe(report.duration)
        m.cycles.labels(result="ok" if report.ok else "degraded").inc()
        m.record_steps(report.results)
        m.drift.set(len(report.plan.steps) if report.plan is not None else 0)
        m.unreachable.set(len(report.unreachable))
        m.stalled.set(len(report.stalled))
        m.set_backoff({name: s.failures for name, s in self.backoff_state().items()})
        m.locked_elsewhere.set(len(report.locked_elsewhere))
        m.manifest_valid.set(1 if report.manifest_valid else 0)
        m.database_up.set(1 if report.database_ok else 0)
        if report.ok:
            m.last_success.set(self.clock.now().timestamp())
        health = (
            "database-unreachable" if not report.database_ok
            else "manifest-invalid" if not report.manifest_valid
            else "git-pull-failed" if report.errors
            else "healthy"
        )  # fmt: skip
        if health != (self._health or "healthy"):
            self._journal_event("daemon-check", health, "; ".join(report.errors)[:2000] or None)
        self._health = health
        done = sum(1 for r in report.results if r.outcome == "ok")
        if report.results or report.backing_off or report.unreachable:
            log.info(
                "cycle: %d step(s), %d done, %d failed; unreachable %s; backing off %s; %.2fs",
                len(report.results), done, len(report.failed), list(report.unreachable),
                list(report.backing_off), report.duration,
            )  # fmt: skip

    def _journal_event(self, kind: str, outcome: str, note: str | None) -> int:
        now = self.clock.now()
        run_id = self._journal.start_run(kind, now, note=note)
        self._journal.finish_run(run_id, now, outcome)
        return run_id

    def retention(self) -> int:
        """Journal retention by age and by count; returns how many runs were dropped."""
        return self._journal.prune(
            self.clock.now(),
            max_age=timedelta(days=self.settings.journal_max_age_days),
            keep_runs=self.settings.journal_keep_runs,
        )

    # -- the loop ----------------------------------------------------------------------------------------

    def run(self) -> int:
        """Run until stopped. Returns 0 after a clean stop (with --once: 0 if the cycle was clean, else 1)."""
        if self.config.once:
            try:
                report = self.cycle()
            finally:
                self.close()
            return 0 if report.ok else 1
        from reconciler.adapters.scheduler import Scheduler
        from reconciler.runtime.http_status import StatusServer, parse_listen

        server = None
        if self.config.listen:
            host, port = parse_listen(self.config.listen, allow_remote=self.config.allow_remote_listen)
            server = StatusServer(
                host, port, ready=self.readiness, metrics=self.metrics.render, metrics_type=CONTENT_TYPE
            ).start()
            self.http_address = server.address
            log.info("serving /healthz, /readyz and /metrics on http://%s", server.address)
        on_main = threading.current_thread() is threading.main_thread()
        previous = self._install_signals() if on_main else {}
        self._journal_event(
            "daemon-start",
            "started",
            f"paths={list(self.config.paths)} interval={self.config.interval:g}s "
            f"database={mask_url(self.settings.database_url)}",
        )
        log.info("daemon started: every %gs on %s", self.config.interval, ", ".join(self.config.paths))
        scheduler = Scheduler()
        scheduler.every(
            "reconcile",
            self._scheduled_cycle,
            seconds=self.config.interval,
            jitter=self.config.interval * self.config.jitter,
        )
        scheduler.every("journal-retention", self._scheduled_retention, seconds=self.config.retention_interval)
        scheduler.start()
        try:
            self._stop.wait()
            log.info(
                "stopping: no new cycle starts; waiting up to %gs for the running step", self.config.stop_timeout
            )
            scheduler.shutdown()
            finished = self._idle.wait(self.config.stop_timeout)
            if finished:
                self._journal_event("daemon-stop", "stopped", "stopped by request")
                log.info("daemon stopped")
                return 0
            run = self._current_run
            if run is not None:
                self._journal.interrupt_run(run, self.clock.now())
            self._journal_event("daemon-stop", "stop-timeout", f"a step ran past {self.config.stop_timeout:g}s")
            log.error("the running step did not finish within %gs; exiting anyway", self.config.stop_timeout)
            if on_main:
                logging.shutdown()
                os._exit(1)
            return 1
        finally:
            if server is not None:
                server.stop()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            if self._idle.is_set():
                self.close()

    def _scheduled_cycle(self) -> None:
        if self.stopping:
            return
        try:
            self.cycle()
        except Exception:  # the scheduler would only log it; keep the daemon alive and say so
            log.exception("reconcile cycle crashed; the next one runs at the interval")

    def _scheduled_retention(self) -> None:
        try:
            dropped = self.retention()
        except Exception:
            log.exception("journal retention failed")
            return
        if dropped:
            log.info("journal retention dropped %d run(s)", dropped)

    def _install_signals(
        self,
    ) -> dict[int, signal.Handlers | Callable[[int, FrameType | None], object] | int | None]:
        previous: dict[int, signal.Handlers | Callable[[int, FrameType | None], object] | int | None] = {}

        def handle(signum: int, frame: FrameType | None) -> None:
            if not self._stop.is_set():
                log.info("received %s: stopping after the running step", signal.Signals(signum).name)
                self._stop.set()
                return
            # Second signal: leave now, and say what was cut short.
            now = self.clock.now()
            run = self._current_run
            if run is not None:
                self._journal.interrupt_run(run, now)
            self._journal_event(
                "daemon-stop", "interrupted", f"second {signal.Signals(signum).name}: exited at once"
            )
            logging.shutdown()
            os._exit(128 + signum)

        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.getsignal(signum)
            signal.signal(signum, handle)
        return previous
