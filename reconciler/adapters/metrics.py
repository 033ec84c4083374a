"""The daemon's Prometheus metrics, in a registry of its own (never the process-global one)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
VERDICTS = ("complete", "incomplete", "refused")


class DaemonMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._verdicts: dict[str, str] | None = None  # what the verdict gauge shows now
        r = self.registry
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
            "reconciler_drift_steps", "Steps the last cycle's plan held (0 = converged).", registry=r
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
        self.suspended = Gauge(
            "reconciler_environment_suspended",
            "1 for each environment an operator suspended (reconciler suspend): observed, never acted on.",
            ["environment"],
            registry=r,
        )
        self._suspended: frozenset[str] = frozenset()
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
            "Unix time of the end of the last cycle that reached the database, failed no step and was complete.",
            registry=r,
        )

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

    def set_backoff(self, failures: dict[str, int]) -> None:
        self.backing_off.set(len(failures))
        self.backoff_failures.clear()
        for name, count in failures.items():
            self.backoff_failures.labels(environment=name).set(count)

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))
