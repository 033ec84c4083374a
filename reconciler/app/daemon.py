"""``reconciler run``: the daemon is wiring. It opens the ports, fires ``runtime.tick`` on a schedule,
hands each report to its listeners (metrics, health journal, log, notifications, readiness), serves /healthz,
/readyz, /metrics and the git webhook, runs a cycle at once on SIGHUP or a webhook (coalesced), and stops on
SIGTERM/SIGINT within a bound. The cycle itself, and what the daemon remembers between
cycles (a ``DaemonState`` value), live in the runtime; see docs/architecture.md.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from reconciler.adapters import pid_file
from reconciler.adapters.metrics import DaemonMetrics
from reconciler.adapters.notify import Notifier, parse_target
from reconciler.app import listeners
from reconciler.app.status_site import SiteFactory
from reconciler.app.stores import open_store, parse_database_url
from reconciler.app.tuning import executor_config_for, policy_for
from reconciler.app.wiring import GitWorkTree, SystemClock, open_dtma, open_journal, open_prober, secret_key
from reconciler.collector import collector_paused
from reconciler.core import notify
from reconciler.core.backoff import BackoffState
from reconciler.core.outcomes import RunOutcome
from reconciler.core.plan import Policy
from reconciler.errors import LockHeldError, SchemaMissingError, StoreError
from reconciler.model.secrets import Secret
from reconciler.ports import Clock, Store
from reconciler.runtime import fleet_status, health, replicas
from reconciler.runtime.cycle import CycleHooks, CycleReport
from reconciler.runtime.execute import ExecutorConfig, StepResult
from reconciler.runtime.replicas import KEEP_FRACTION, LEASE_INTERVALS, ReplicaShare
from reconciler.runtime.tick import DaemonConfig, DaemonState, TickPorts, tick
from reconciler.settings import Settings, mask_url

if TYPE_CHECKING:
    from reconciler.adapters.scheduler import Scheduler

__all__ = ["CycleReport", "Daemon", "DaemonConfig", "NotifyConfig"]

log = logging.getLogger("reconciler.daemon")


def replica_id() -> str:
    """This daemon among replicas: host, pid and a random part (a restarted daemon is a new replica)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


Handler = signal.Handlers | Callable[[int, FrameType | None], object] | int | None


RECONCILE_JOB = "reconcile"


@dataclass(frozen=True)
class NotifyConfig:
    """Notifications (``--notify``): receivers beside ``RECONCILER_NOTIFY``'s, the period of one message per
    (event kind, environment), and how many cycles a toolbox may go unobserved before it is told."""

    urls: tuple[Secret, ...] = field(default=(), repr=False)
    period: float = notify.DEFAULT_PERIOD.total_seconds()
    unobserved_cycles: int = notify.DEFAULT_UNOBSERVED_CYCLES
    timeout: float = 5.0  # seconds per delivery


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
        notify_config: NotifyConfig | None = None,
        pid_path: Path | None = None,
    ) -> None:
        """Opens the journal and the store. With SQLite, takes the one-daemon-per-file lock: a second
        daemon raises LockHeldError here. A PostgreSQL server that is down is retried every cycle.

        ``site`` builds the status page served on ``--listen`` (``presentation.status_site.status_pages``;
        without it only the probes and metrics are served); ``on_serving`` is told the address served.
        ``pid_path``: where ``run`` writes its pid for ``reconcile-now`` (default: beside the journal)."""
        targets = [
            parse_target(u.reveal()) for u in (*settings.notify_urls, *(notify_config or NotifyConfig()).urls)
        ]
        if config.replica is None and not config.once:
            config = replace(config, replica=replica_id())
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
        # Readiness probes, one event loop for the daemon's life (none with RECONCILER_READINESS=off).
        self._prober = open_prober(settings) if settings.readiness else None
        self._state = DaemonState()
        self._stop, self._cycle_lock, self._idle = threading.Event(), threading.Lock(), threading.Event()
        self._idle.set()
        self._current_run: int | None = None
        self._health = listeners.HealthJournal(self._journal, self.clock)
        self._log = listeners.CycleLog()
        self._notifications: listeners.Notifications | None = None
        if targets:
            cfg = notify_config or NotifyConfig()
            notifier = Notifier(targets, on_failure=self._notification_failed, timeout=cfg.timeout)
            self._notifications = listeners.Notifications(
                notifier, period=timedelta(seconds=cfg.period), unobserved_cycles=cfg.unobserved_cycles
            )
        # Reconcile now: a trigger while a cycle runs asks for exactly one more; more triggers meanwhile fold in.
        self._trigger_lock = threading.Lock()
        self._pending = False  # a cycle was asked for and has not started yet
        self._looping = False  # the scheduled job is running cycles
        self._scheduler: Scheduler | None = None
        self._pid_path = pid_path or pid_file.beside(settings.journal_path)
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
        if self._notifications is not None:
            self._notifications.close()
        self._dtma.close()
        if self._prober is not None:
            self._prober.close()
        if self._store is not None:
            if self.config.replica is not None:
                self._retire(self._store, self.config.replica)
            self._store.close()
            self._store = None
        self._journal.close()

    @staticmethod
    def _retire(store: Store, replica: str) -> None:
        """Hand this replica's environments over at once (a clean stop), instead of when its leases expire."""
        try:
            if store.shares_work:
                store.retire_replica(replica)
        except StoreError as exc:
            log.warning(
                "could not hand over this replica's environments (they move when its leases expire): %s", exc
            )

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
        # The cyclic collector is paused for the whole cycle: its observation of the fleet lives until the
        # next one, and with the default thresholds the collector ran about 600 times per cycle and walked the
        # daemon's whole heap (1.3 M objects at 10,000 toolboxes) every few cycles: 0.78 s of a 5.4 s cycle at
        # 10,000 x 10, 58 ms of 0.48 s at 1,000 x 10. Paused, the first collection after the cycle looks at
        # what it left once; reference counting frees everything else as the cycle goes.
        with self._cycle_lock, collector_paused():
            self._idle.clear()
            try:
                ports = TickPorts(
                    self._open_store, self._dtma, self._journal, self.clock, GitWorkTree(), self._key, self._sleep,
                    prober=self._prober,
                )  # fmt: skip
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
            if self._notifications is not None:
                secrets = {
                    *self._state.journal_secrets,
                    self.settings.dtma_token.reveal() if self.settings.dtma_token else "",
                }
                self._notifications(report, self.clock.now(), secrets)
            if self._on_cycle is not None:
                self._on_cycle(report)
            self.cycle_finished.set()
            return report

    def _notification_failed(self, reason: str) -> None:
        self.metrics.notification_failures.labels(reason=reason).inc()

    def request_cycle(self, why: str) -> str:
        """Reconcile now (SIGHUP, the git webhook): run a cycle ``trigger_settle`` seconds from now, or right
        after the running one. Triggers that arrive before it starts fold into it. Thread-safe; returns what
        was done, for the caller's answer."""
        if self.stopping:
            return "stopping: no cycle"
        with self._trigger_lock:
            if self._pending:
                log.info("%s: a cycle is already asked for", why)
                return "a cycle is already asked for"
            self._pending = True
            looping, scheduler = self._looping, self._scheduler
        if looping:
            log.info("%s: one more cycle after the running one", why)
            return "one more cycle after the running one"
        settle = self.config.trigger_settle
        if scheduler is not None:
            scheduler.wake(RECONCILE_JOB, delay=settle)
        log.info("%s: reconciling in %gs (later triggers until then fold in)", why, settle)
        return f"a cycle starts within {settle:g}s"

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

        pids = pid_file.PidFile(self._pid_path)
        if not pids.acquire():
            log.warning("another daemon holds %s: `reconciler reconcile-now` reaches that one", self._pid_path)
        scheduler = Scheduler()
        scheduler.every(
            RECONCILE_JOB, self._scheduled_cycle, seconds=interval, jitter=interval * self.config.jitter
        )
        scheduler.every("journal-retention", self._scheduled_retention, seconds=self.config.retention_interval)
        if self.config.replica is not None:
            scheduler.every("replica-leases", self._scheduled_keep, seconds=interval * KEEP_FRACTION)
        scheduler.start()
        with self._trigger_lock:
            self._scheduler = scheduler
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
            pids.release()
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
        """The scheduled job: a cycle, then one more for as long as a trigger came in while one ran."""
        with self._trigger_lock:
            self._looping = True
        try:
            while True:
                with self._trigger_lock:
                    self._pending = False
                if self.stopping:
                    return
                try:
                    self.cycle()
                except Exception:  # the scheduler would only log it; keep the daemon alive and say so
                    log.exception("reconcile cycle crashed; the next one runs at the interval")
                with self._trigger_lock:
                    if not self._pending:
                        self._looping = False
                        return
        finally:
            with self._trigger_lock:
                self._looping = False

    def keep_share(self) -> bool:
        """Between cycles (replicas sharing a PostgreSQL database): beat, renew this replica's leases, and
        start a cycle when another replica's leases lapsed (it died), so its environments move at once instead
        of at the next interval. Returns whether a cycle was asked for."""
        store, replica = self._store, self.config.replica
        if store is None or replica is None or self.stopping:
            return False
        try:
            if not store.shares_work:
                return False
            share_of = ReplicaShare(replica, LEASE_INTERVALS * self.config.interval)
            if not replicas.keep(store, self.clock, share_of):
                return False
        except StoreError as exc:
            log.debug("keeping the leases failed (the next cycle reports the database): %s", exc)
            return False
        self.request_cycle("a replica's leases lapsed")
        return True

    def _scheduled_keep(self) -> None:
        try:
            self.keep_share()
        except Exception:
            log.exception("keeping the leases failed")

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

        def reconcile_now(signum: int, frame: FrameType | None) -> None:
            self.request_cycle("SIGHUP")

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
        previous[signal.SIGHUP] = signal.getsignal(signal.SIGHUP)
        signal.signal(signal.SIGHUP, reconcile_now)
        return previous
