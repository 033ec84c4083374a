"""The daemon's Prometheus metrics, in a registry of its own (never the process-global one).

The registry also carries the standard process (Linux: it reads /proc; elsewhere it reports nothing),
platform and garbage-collector collectors that the process-global registry would have had, and a
``reconciler_build_info`` series. Per-environment series carry an ``environment`` label whose values are the
environments the daemon's cycles speak for; ``keep_environments`` drops the series of any other.
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from prometheus_client import (
    GC_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

from reconciler import __version__

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
VERDICTS = ("complete", "incomplete", "refused")
DTMA_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 600)


class DaemonMetrics:
    def __init__(self, *, interval: float | None = None) -> None:
        """``interval``: the daemon's seconds between cycles, exported so that alert rules can say
        "3 intervals" without repeating the daemon's flags."""
        self.registry = CollectorRegistry(auto_describe=True)
        self._verdicts: dict[str, str] | None = None  # what the verdict gauge shows now
        self._environments: dict[str, tuple[Any, ...]] = {}  # name -> the per-environment values shown now
        self._drift_actions: dict[str, frozenset[str]] = {}  # name -> actions with a drift_by_action series
        self._env_children: dict[str, tuple[Any, ...]] = {}  # name -> its labelled series
        self._dtma_children: dict[tuple[str, str, str], tuple[Any, Any]] = {}
        r = self.registry
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        if GC_COLLECTOR is not None:  # None where the interpreter has no gc.get_stats (not CPython)
            GCCollector(registry=r)
        self.build_info = Gauge(
            "reconciler_build_info",
            "Always 1; the labels say which reconciler and Python this is.",
            ["version", "python", "implementation"],
            registry=r,
        )
        self.build_info.labels(
            version=__version__,
            python=platform.python_version(),
            implementation=sys.implementation.name,
        ).set(1)
        self.interval = Gauge(
            "reconciler_cycle_interval_seconds", "The daemon's configured time between cycles.", registry=r
        )
        if interval is not None:
            self.interval.set(interval)
        self.cycle_duration = Histogram(
            "reconciler_cycle_duration_seconds",
            "Wall time of one reconcile cycle (observe, plan, apply).",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
            registry=r,
        )
        self.cycles = Counter("reconciler_cycles", "Reconcile cycles run, by result.", ["result"], registry=r)
        self.steps = Counter(
            "reconciler_steps", "Plan steps applied, by action and outcome.", ["action", "outcome"], registry=r
        )
        self.drift = Gauge(
            "reconciler_drift_steps",
            "Steps the last cycle's plan held, those a suspension holds back included (0 = converged).",
            registry=r,
        )
        self.unreachable = Gauge(
            "reconciler_unreachable_toolboxes", "Toolboxes whose DTMA could not be listed last cycle.", registry=r
        )
        self.stalled = Gauge(
            "reconciler_stalled_servers", "Servers the flap guard leaves alone (did not settle).", registry=r
        )
        self.backing_off = Gauge(
            "reconciler_backing_off_environments", "Environments waiting out a failure backoff.", registry=r
        )
        self.backoff_failures = Gauge(
            "reconciler_environment_consecutive_failures",
            "Consecutive failed cycles of an environment in backoff.",
            ["environment"],
            registry=r,
        )
        self.locked_elsewhere = Gauge(
            "reconciler_locked_elsewhere_environments",
            "Environments skipped last cycle because another replica holds their lock.",
            registry=r,
        )
        self.leased_elsewhere = Gauge(
            "reconciler_leased_elsewhere_environments",
            "Environments another daemon replica owns (leases; PostgreSQL): this replica leaves them to it.",
            registry=r,
        )
        self.live_replicas = Gauge(
            "reconciler_live_replicas",
            "Daemon replicas sharing the environments by leases, this one included (0: not sharing).",
            registry=r,
        )
        self.suspended = Gauge(
            "reconciler_environment_suspended",
            "1 for each environment an operator suspended (reconciler suspend): observed, never acted on.",
            ["environment"],
            registry=r,
        )
        self._suspended: frozenset[str] = frozenset()
        self.server_unhealthy = Gauge(
            "reconciler_server_unhealthy",
            "1 for each running server that failed its readiness probe failureThreshold cycles in a row.",
            ["environment", "server"],
            registry=r,
        )
        self.server_probe_failures = Gauge(
            "reconciler_server_probe_failures",
            "Readiness probes a running server failed in consecutive cycles (failing servers only).",
            ["environment", "server"],
            registry=r,
        )
        self._failing: dict[tuple[str, str], tuple[int, bool]] = {}
        self.manifest_valid = Gauge("reconciler_manifest_valid", "1 if the manifests loaded cleanly.", registry=r)
        self.database_up = Gauge("reconciler_database_up", "1 if the database answered last cycle.", registry=r)
        self.verdict = Gauge(
            "reconciler_environment_verdict",
            "1 for the last cycle's verdict of each environment it covered (complete, incomplete, refused): "
            "incomplete means not observed or a declared server that cannot be reconciled.",
            ["environment", "verdict"],
            registry=r,
        )
        self.last_success = Gauge(
            "reconciler_last_success_timestamp_seconds",
            "Unix time of the end of the last cycle that reached the database, failed no step and was complete "
            "(steps a suspension holds back aside).",
            registry=r,
        )

        env = ["environment"]
        self.env_drift = Gauge(
            "reconciler_environment_drift_steps",
            "Steps the last cycle that covered an environment planned for it (0 = nothing to do).",
            env,
            registry=r,
        )
        self.env_drift_by_action = Gauge(
            "reconciler_environment_drift_steps_by_action",
            "The planned steps of an environment by action; only actions with at least one step are shown.",
            ["environment", "action"],
            registry=r,
        )
        self.env_unobserved = Gauge(
            "reconciler_environment_unobserved",
            "1 if the last cycle that covered an environment could not observe its toolbox (unreachable, "
            "not active, token missing or rejected, Docker down, not in the database), else 0.",
            env,
            registry=r,
        )
        self.env_stalled = Gauge(
            "reconciler_environment_stalled_servers",
            "Servers of an environment the flap guard leaves alone (they did not settle after two applies).",
            env,
            registry=r,
        )
        self.env_failed_steps = Counter(
            "reconciler_environment_failed_steps",
            "Steps that failed, by environment, since the daemon started.",
            env,
            registry=r,
        )
        self.env_last_success = Gauge(
            "reconciler_environment_last_success_timestamp_seconds",
            "Unix time of the end of the last cycle in which an environment was observed, complete, and every "
            "step it had ended ok; 0 if none yet since the daemon started.",
            env,
            registry=r,
        )
        self.dtma_requests = Counter(
            "reconciler_dtma_requests",
            "HTTP requests sent to DTMA agents (each retry counts), by method, route (with {name} for a "
            "server's name) and status class (2xx, 3xx, 4xx, 5xx, transport-error).",
            ["method", "route", "status_class"],
            registry=r,
        )
        self.dtma_latency = Histogram(
            "reconciler_dtma_request_duration_seconds",
            "Time from sending a DTMA request to its answer or its failure, by method, route and status class.",
            ["method", "route", "status_class"],
            buckets=DTMA_BUCKETS,
            registry=r,
        )
        self.notification_failures = Counter(
            "reconciler_notification_failures",
            "Notifications not delivered, by reason (timeout, connection, http-status, queue-full).",
            ["reason"],
            registry=r,
        )

    def observe_dtma(self, method: str, route: str, status_class: str, seconds: float) -> None:
        """One DTMA request (the DTMA client's request observer); thread-safe, called on the client's loop."""
        key = (method, route, status_class)
        children = self._dtma_children.get(key)
        if children is None:
            labels = {"method": method, "route": route, "status_class": status_class}
            children = self._dtma_children[key] = (
                self.dtma_requests.labels(**labels),
                self.dtma_latency.labels(**labels),
            )
        children[0].inc()
        children[1].observe(seconds)

    def set_environment(
        self,
        name: str,
        *,
        drift_steps: int,
        drift_by_action: Mapping[str, int],
        unobserved: bool,
        failed_steps: int,
        stalled_servers: int,
        success_at: float | None,
    ) -> None:
        """One environment's values after a cycle that covered it; ``success_at`` (Unix time) when that
        cycle was a success for it. Each series exists from the first cycle (the counter and the timestamp
        at 0), and unchanged values are not written again (a thousand environments each cycle)."""
        children = self._env_children.get(name)
        if children is None:
            children = self._env_children[name] = (
                self.env_drift.labels(environment=name),
                self.env_unobserved.labels(environment=name),
                self.env_failed_steps.labels(environment=name),
                self.env_last_success.labels(environment=name),
                self.env_stalled.labels(environment=name),
            )
        if failed_steps:
            children[2].inc(failed_steps)
        if success_at is not None:
            children[3].set(success_at)
        shown = (drift_steps, tuple(sorted(drift_by_action.items())), unobserved, stalled_servers)
        if self._environments.get(name) == shown:
            return
        self._environments[name] = shown
        children[0].set(drift_steps)
        children[1].set(1 if unobserved else 0)
        children[4].set(stalled_servers)
        for action in self._drift_actions.get(name, frozenset()) - set(drift_by_action):
            self.env_drift_by_action.remove(name, action)
        for action, count in drift_by_action.items():
            self.env_drift_by_action.labels(environment=name, action=action).set(count)
        self._drift_actions[name] = frozenset(drift_by_action)

    def keep_environments(self, names: Collection[str]) -> None:
        """Drop every per-environment series of an environment not in ``names`` (no longer declared)."""
        for name in set(self._env_children) - set(names):
            del self._env_children[name]
            self._environments.pop(name, None)
            for action in self._drift_actions.pop(name, frozenset()):
                self.env_drift_by_action.remove(name, action)
            for metric in (
                self.env_drift,
                self.env_unobserved,
                self.env_failed_steps,
                self.env_last_success,
                self.env_stalled,
            ):
                metric.remove(name)

    def record_steps(self, results: Iterable[tuple[str, str]]) -> None:
        """Count steps given as (action, outcome) pairs."""
        for action, outcome in results:
            self.steps.labels(action=action, outcome=outcome).inc()

    def set_verdicts(self, verdicts: Mapping[str, str]) -> None:
        """The last cycle's verdict per environment it covered: complete, incomplete or refused."""
        if verdicts == self._verdicts:
            return  # a steady fleet: 3,000 label look-ups a cycle at 1,000 toolboxes, for nothing
        self._verdicts = dict(verdicts)
        self.verdict.clear()
        for name, verdict in verdicts.items():
            for value in VERDICTS:
                self.verdict.labels(environment=name, verdict=value).set(1 if value == verdict else 0)

    def set_suspended(self, names: Iterable[str]) -> None:
        """The environments suspended now (among those this daemon's last cycle covered)."""
        wanted = frozenset(names)
        if wanted == self._suspended:
            return
        self._suspended = wanted
        self.suspended.clear()
        for name in sorted(wanted):
            self.suspended.labels(environment=name).set(1)

    def set_server_health(self, failing: Mapping[tuple[str, str], tuple[int, bool]]) -> None:
        """(environment, server) -> (consecutive failed probes, unhealthy) of the servers failing now; the
        series of a server that recovered (or is no longer probed) go."""
        if failing == self._failing:
            return
        self._failing = dict(failing)
        self.server_unhealthy.clear()
        self.server_probe_failures.clear()
        for (environment, server), (failures, unhealthy) in sorted(failing.items()):
            self.server_probe_failures.labels(environment=environment, server=server).set(failures)
            if unhealthy:
                self.server_unhealthy.labels(environment=environment, server=server).set(1)

    def set_backoff(self, failures: dict[str, int]) -> None:
        self.backing_off.set(len(failures))
        self.backoff_failures.clear()
        for name, count in failures.items():
            self.backoff_failures.labels(environment=name).set(count)

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))
