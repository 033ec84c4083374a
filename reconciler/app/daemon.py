"""``reconciler run``: the daemon is wiring. It opens the ports, fires ``runtime.tick`` on a schedule,
hands each report to its listeners (metrics, health journal, log, readiness), serves /healthz, /readyz and
/metrics, and stops on SIGTERM/SIGINT within a bound. The cycle itself, and what the daemon remembers between
cycles (a ``DaemonState`` value), live in the runtime; see docs/architecture.md.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Mapping
from datetime import timedelta
from types import FrameType

from reconciler.adapters.metrics import DaemonMetrics
from reconciler.app import listeners
from reconciler.app.status_site import SiteFactory
from reconciler.app.stores import open_store, parse_database_url
from reconciler.app.tuning import executor_config_for, policy_for
from reconciler.app.wiring import GitWorkTree, SystemClock, open_dtma, open_journal, secret_key
from reconciler.core.backoff import BackoffState
from reconciler.core.outcomes import RunOutcome
from reconciler.core.plan import Policy
from reconciler.errors import LockHeldError, SchemaMissingError, StoreError
from reconciler.ports import Clock, Store
from reconciler.runtime import fleet_status, health
from reconciler.runtime.cycle import CycleHooks, CycleReport
from reconciler.runtime.execute import ExecutorConfig, StepResult
from reconciler.runtime.tick import DaemonConfig, DaemonState, TickPorts, tick
from reconciler.settings import Settings, mask_url

__all__ = ["CycleReport", "Daemon", "DaemonConfig"]

log = logging.getLogger("reconciler.daemon")
Handler = signal.Handlers | Callable[[int, FrameType | None], object] | int | None


class Daemon:
    def __init__(
        self,
        settings: Settings,
        config: DaemonConfig,
        *,
        policy: Policy | None = None,
        environ: Mapping[str, str] | None = None,
        on_step: Callable[[StepResult], None] | None = None,
        on_cycle: Callable[[CycleReport], None] | None = None,
        clock: Clock | None = None,
        executor_config: ExecutorConfig | None = None,
        rng: random.Random | None = None,
        sleep: Callable[[float], None] = time.sleep,
        site: SiteFactory | None = None,
        on_serving: Callable[[str], None] | None = None,
    ) -> None:
        """Opens the journal and the store. With SQLite, takes the one-daemon-per-file lock: a second
        daemon raises LockHeldError here. A PostgreSQL server that is down is retried every cycle.

        ``site`` builds the status page served on ``--listen`` (``presentation.status_site.status_pages``;
        without it only the probes and metrics are served); ``on_serving`` is told the address served."""
        self.settings, self.config, self.policy = settings, config, policy_for(settings, policy)
        self.clock: Clock = clock or SystemClock()
        self.metrics = DaemonMetrics(interval=config.interval)
        self._environ = os.environ if environ is None else environ
        self._on_step, self._on_cycle = on_step, on_cycle
        self.site, self.on_serving = site, on_serving
        self._executor_config = executor_config_for(settings, executor_config)
        self._rng, self._sleep = rng or random.Random(), sleep
        self._store: Store | None = None
        store = self._open_first_store()
        try:
            self._key = secret_key(settings, store)
            self._journal = open_journal(settings)
        except BaseException:
            if store is not None:
                store.close()
            raise
        # One client, one connection pool, for the daemon's life; every request it sends is counted.
        self._dtma = open_dtma(settings, self.metrics.observe_dtma)
        self._state = DaemonState()
        self._stop, self._cycle_lock, self._idle = threading.Event(), threading.Lock(), threading.Event()
        self._idle.set()
        self._current_run: int | None = None
        self._health = listeners.HealthJournal(self._journal, self.clock)
        self._log = listeners.CycleLog()
        self.last_report: CycleReport | None = None
        self.fleet = fleet_status.FleetStatus()  # what the status page shows; replaced after every cycle
        self.last_cycle_end: float | None = None  # clock.monotonic() at the end of the last cycle
        self.cycle_finished = threading.Event()  # set after every cycle (tests and embedders wait on it)
        self.http_address: str | None = None  # host:port actually served by --listen (port 0 = any)
        self._closed = False

    # -- ports -------------------------------------------------------------------------------------------

    def _open_store(self) -> Store:
        if self._store is None:
            store = open_store(self.settings.database_url)
            try:
                store.acquire_daemon_lock()  # SQLite: one daemon per file; PostgreSQL: nothing to do
            except StoreError:
                store.close()
                raise
            self._store = store
        return self._store

    def _open_first_store(self) -> Store | None:
        try:
            return self._open_store()
        except (SchemaMissingError, LockHeldError):
            raise
        except StoreError as exc:
            if parse_database_url(self.settings.database_url).kind == "sqlite":
                raise
            log.warning("database not reachable yet (retried every cycle): %s", exc)
            return None

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

    # -- one cycle and its listeners ---------------------------------------------------------------------

    def cycle(self) -> CycleReport:
        """One reconcile pass. Never raises for a database, DTMA or manifest problem: it reports it."""
        with self._cycle_lock:
            self._idle.clear()
            try:
                ports = TickPorts(
                    self._open_store, self._dtma, self._journal, self.clock, GitWorkTree(), self._key, self._sleep
                )
                hooks = CycleHooks(
                    on_step=self._on_step,
                    stopping=self._stop.is_set,
                    on_run=self._set_current_run,
                    rand=self._rng.random,
                    executor_config=self._executor_config,
                )
                report, self._state = tick(
                    ports, self.settings, self.config, self.policy, self._environ, self._state, hooks
                )
            finally:
                self._idle.set()
            self.last_report, self.last_cycle_end = report, self.clock.monotonic()
            if self.site is not None and self.config.listen:  # only a served page pays for its view
                backoff, now = self.backoff_state(), self.clock.now()
                self.fleet = listeners.status_view(
                    self.fleet, report, self._state, settings=self.settings, backoff=backoff, now=now
                )
            listeners.record_metrics(self.metrics, report, self.backoff_state(), self.clock.now().timestamp())
            self._health(report)
            self._log(report)
            if self._on_cycle is not None:
                self._on_cycle(report)
            self.cycle_finished.set()
            return report

    def _set_current_run(self, run_id: int | None) -> None:
        self._current_run = run_id

    def readiness(self) -> tuple[bool, str]:
        end = self.last_cycle_end
        age = None if end is None else self.clock.monotonic() - end
        return health.readiness(self.last_report, age, self.config.interval, self.config.jitter)

    def backoff_state(self) -> dict[str, BackoffState]:
        """Environments in backoff, by name."""
        state = self._state.cycle
        return {state.name(k): v for k, v in state.backoff.items()}

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
                return 0 if self.cycle().ok else 1
            finally:
                self.close()
        from reconciler.app.serving import serve

        server = serve(self) if self.config.listen else None
        on_main = threading.current_thread() is threading.main_thread()
        previous = self._install_signals() if on_main else {}
        paths, interval = list(self.config.paths), self.config.interval
        note = f"paths={paths} interval={interval:g}s database={mask_url(self.settings.database_url)}"
        listeners.event(self._journal, self.clock, "daemon-start", "started", note)
        log.info("daemon started: every %gs on %s", interval, ", ".join(paths))
        from reconciler.adapters.scheduler import Scheduler

        scheduler = Scheduler()
        scheduler.every("reconcile", self._scheduled_cycle, seconds=interval, jitter=interval * self.config.jitter)
        scheduler.every("journal-retention", self._scheduled_retention, seconds=self.config.retention_interval)
        scheduler.start()
        try:
            self._stop.wait()
            log.info(
                "stopping: no new cycle starts; waiting up to %gs for the running step", self.config.stop_timeout
            )
            scheduler.shutdown()
            if self._idle.wait(self.config.stop_timeout):
                listeners.event(self._journal, self.clock, "daemon-stop", RunOutcome.STOPPED, "stopped by request")
                log.info("daemon stopped")
                return 0
            self._interrupt("stop-timeout", f"a step ran past {self.config.stop_timeout:g}s")
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

    def _interrupt(self, outcome: str, note: str) -> None:
        """Journal that the running step was cut short (stop timeout, second signal)."""
        run = self._current_run
        if run is not None:
            self._journal.interrupt_run(run, self.clock.now())
        listeners.event(self._journal, self.clock, "daemon-stop", outcome, note)

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

    def _install_signals(self) -> dict[int, Handler]:
        previous: dict[int, Handler] = {}

        def handle(signum: int, frame: FrameType | None) -> None:
            name = signal.Signals(signum).name
            if not self._stop.is_set():
                log.info("received %s: stopping after the running step", name)
                self._stop.set()
                return
            self._interrupt("interrupted", f"second {name}: exited at once")  # leave now, saying what was cut
            logging.shutdown()
            os._exit(128 + signum)

        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.getsignal(signum)
            signal.signal(signum, handle)
        return previous
