"""What listens to each daemon cycle's report: the metrics, the journalled health condition, the log and the
notifications."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

from reconciler.adapters.metrics import DaemonMetrics
from reconciler.adapters.notify import Notifier
from reconciler.core import notify
from reconciler.core.backoff import BackoffState
from reconciler.core.outcomes import StepOutcome
from reconciler.core.verdict import GapKind
from reconciler.ports import Clock, Journal
from reconciler.runtime import fleet_status, health
from reconciler.runtime.cycle import CycleReport
from reconciler.runtime.environment_series import CycleSeries, series_of
from reconciler.runtime.tick import DaemonState
from reconciler.settings import Settings

log = logging.getLogger("reconciler.daemon")


def record_metrics(
    metrics: DaemonMetrics, report: CycleReport, backoff: Mapping[str, BackoffState], now: float
) -> None:
    """``now``: wall-clock seconds (Unix time) at the end of the cycle."""
    metrics.cycle_duration.observe(report.duration)
    metrics.cycles.labels(result="ok" if report.ok else "degraded").inc()
    metrics.record_steps((str(r.step.action), str(r.outcome)) for r in report.results)
    series = series_of(report)
    # The steps a suspension holds back are drift too, as in the per-environment series: a suspended toolbox
    # with drift is not converged.
    metrics.drift.set(sum(s.drift_steps for s in series.covered.values()) if series is not None else 0)
    metrics.unreachable.set(len(report.unreachable))
    metrics.stalled.set(len(report.stalled))
    # The cycle's memory may still hold the backoff of an environment that left the manifests: not shown.
    failures = {name: s.failures for name, s in backoff.items() if series is None or name in series.mentioned}
    metrics.set_backoff(failures)
    metrics.locked_elsewhere.set(len(report.locked_elsewhere))
    metrics.leased_elsewhere.set(len(report.leased_elsewhere))
    metrics.live_replicas.set(report.live_replicas)
    metrics.manifest_valid.set(1 if report.manifest_valid else 0)
    metrics.database_up.set(1 if report.database_ok else 0)
    if report.plan is not None:
        metrics.set_verdicts(health.environment_verdicts(report))
        metrics.set_suspended(report.suspended)
        metrics.set_server_health({
            (h.environment_name, h.server): (h.failures, h.unhealthy) for h in report.plan.health if not h.ok
        })  # fmt: skip
    if report.ok or _clean_but_suspended(report):
        metrics.last_success.set(now)
    if series is not None:
        record_environments(metrics, series, now)


def _clean_but_suspended(report: CycleReport) -> bool:
    """A cycle whose only gaps are steps a suspension holds back: clean for the fleet-wide "no successful
    cycle" alert, which would otherwise page for every suspension an operator makes during an incident (the
    per-environment series still show the suspended toolbox as not converged)."""
    gaps = report.verdict.gaps
    return (
        report.database_ok
        and report.manifest_valid
        and not report.failed
        and bool(gaps)
        and all(g.kind is GapKind.SUSPENDED for g in gaps)
    )


def record_environments(metrics: DaemonMetrics, series: CycleSeries, now: float) -> None:
    """The per-environment series; an environment the cycle no longer speaks for loses its series."""
    for name, values in series.covered.items():
        metrics.set_environment(
            name,
            drift_steps=values.drift_steps,
            drift_by_action=values.drift_by_action,
            unobserved=values.unobserved,
            failed_steps=values.failed_steps,
            stalled_servers=values.stalled_servers,
            success_at=now if values.succeeded else None,
        )
    metrics.keep_environments(series.mentioned)


class HealthJournal:
    """Journals a ``daemon-check`` run when the daemon's health condition changes (manifest invalid,
    database down, git pull failed, and back): idle cycles write nothing."""

    def __init__(self, journal: Journal, clock: Clock) -> None:
        self._journal, self._clock = journal, clock
        self._last = "healthy"

    def __call__(self, report: CycleReport) -> None:
        condition = health.condition(report)
        if condition != self._last:
            event(self._journal, self._clock, "daemon-check", condition, "; ".join(report.errors)[:2000] or None)
        self._last = condition


def event(journal: Journal, clock: Clock, kind: str, outcome: str, note: str | None) -> int:
    now = clock.now()
    run_id = journal.start_run(kind, now, note=note)
    journal.finish_run(run_id, now, outcome)
    return run_id


class CycleLog:
    """One line per cycle that did something, and the verdict's gaps when they change (not every cycle)."""

    def __init__(self) -> None:
        self._gaps: tuple[str, ...] = ()
        self._suspended: dict[str, str] = {}  # name -> what the log said about its suspension
        self._share: tuple[int, int] = (0, 0)  # (live replicas, environments owned) as last logged

    def __call__(self, report: CycleReport) -> None:
        done = sum(1 for r in report.results if r.outcome == StepOutcome.OK)
        if report.results or report.backing_off or report.unreachable:
            log.info(
                "cycle: %d step(s), %d done, %d failed; unreachable %s; backing off %s; %.2fs",
                len(report.results), done, len(report.failed), list(report.unreachable),
                list(report.backing_off), report.duration,
                extra=cycle_fields(report),
            )  # fmt: skip
        if report.plan is None:
            return
        self._log_suspensions(report)
        share = (
            report.live_replicas,
            len(report.acted_on) + len(report.backing_off) + len(report.locked_elsewhere),
        )
        if report.live_replicas and share != self._share:
            total = share[1] + len(report.leased_elsewhere)
            log.info(
                "this replica owns %d of %d environment(s); %d live replica(s) share them",
                share[1],
                total,
                share[0],
            )
        self._share = share
        gaps = tuple(str(g) for g in report.verdict.gaps)
        if gaps != self._gaps:
            if gaps:
                by_env: dict[str | None, list[str]] = {}
                for g in report.verdict.gaps:
                    by_env.setdefault(g.environment, []).append(str(g))
                for name, texts in by_env.items():  # one line per environment, filterable on its field
                    fields = {"outcome": "incomplete"} | ({"environment": name} if name is not None else {})
                    log.warning("cycle incomplete: %s", "; ".join(texts), extra=fields)
            else:
                log.info("every environment in scope is complete again", extra=cycle_fields(report))
        self._gaps = gaps

    def _log_suspensions(self, report: CycleReport) -> None:
        """Once when an environment is suspended (or its suspension changes) and once when it is resumed."""
        now = {name: s.describe() for name, s in report.suspended.items()}
        for name in sorted(now):
            if self._suspended.get(name) != now[name]:
                log.warning(
                    "environment %s is %s: observed, not acted on until resumed",
                    name,
                    now[name],
                    extra={"environment": name, "outcome": "suspended"},
                )
        covered = set(report.acted_on)
        for name in sorted(set(self._suspended) - set(now)):
            if name in covered:
                log.info(
                    "environment %s was resumed: reconciling it again",
                    name,
                    extra={"environment": name, "outcome": "resumed"},
                )
        # An environment this cycle did not cover (backing off, locked elsewhere) keeps what was said of it.
        self._suspended = {**{k: v for k, v in self._suspended.items() if k not in covered}, **now}


def cycle_fields(report: CycleReport) -> dict[str, str | int]:
    """The structured fields of a log line about a whole cycle (JSON logs show them)."""
    fields: dict[str, str | int] = {"outcome": str(report.outcome) if report.outcome else _condition(report)}
    if report.run_id is not None:
        fields["run_id"] = report.run_id
    fields["duration_ms"] = round(report.duration * 1000)
    return fields


def _condition(report: CycleReport) -> str:
    """An unjournalled cycle's outcome word: ``no-changes``, ``incomplete``, or the health condition."""
    condition = health.condition(report)
    if condition != "healthy":
        return condition
    return "no-changes" if report.verdict.complete else "incomplete"


def status_view(
    previous: fleet_status.FleetStatus,
    report: CycleReport,
    state: DaemonState,
    *,
    settings: Settings,
    backoff: Mapping[str, BackoffState],
    now: datetime,
) -> fleet_status.FleetStatus:
    """The status page's view after a cycle; on any failure the previous one (the page never stops the daemon)."""
    loaded = state.loaded
    secrets = {*state.journal_secrets, settings.dtma_token.reveal() if settings.dtma_token else ""}
    try:
        return fleet_status.update(
            previous,
            report,
            desired=loaded.desired if loaded is not None else None,
            backoff=backoff,
            now=now,
            secrets=secrets,
        )
    except Exception:
        log.exception("updating the status page failed; it shows the previous cycle")
        return previous


class Notifications:
    """Tells the operators what a cycle found (``core.notify``: events, deduplication, the rate limit) through
    a ``Notifier`` that delivers in the background. Never raises: a notification never stops a cycle."""

    def __init__(
        self,
        notifier: Notifier,
        *,
        period: timedelta = notify.DEFAULT_PERIOD,
        unobserved_cycles: int = notify.DEFAULT_UNOBSERVED_CYCLES,
    ) -> None:
        self._notifier, self._period, self._unobserved_cycles = notifier, period, unobserved_cycles
        self._memory = notify.NotifyMemory()

    def __call__(self, report: CycleReport, now: datetime, secrets: Iterable[str]) -> tuple[notify.Event, ...]:
        """Queue the messages this cycle gives; returns them (already redacted)."""
        try:
            events, self._memory = notify.decide(
                self._memory,
                facts_of(report),
                now,
                period=self._period,
                unobserved_cycles=self._unobserved_cycles,
                secrets=secrets,
            )
            for event in events:
                self._notifier.send(event, now)
            return events
        except Exception:
            log.exception("deriving notifications failed; this cycle sends none")
            return ()

    def close(self) -> None:
        self._notifier.close()


def facts_of(report: CycleReport) -> notify.CycleFacts:
    """The parts of a cycle's report the notifier reads."""
    applied = tuple(
        notify.AppliedStep(r.step, str(r.outcome), r.message, str(r.notice) if r.notice is not None else None)
        for r in report.results
    )
    return notify.CycleFacts(
        plan=report.plan,
        applied=applied,
        gaps=report.verdict.gaps,
        acted_on=report.acted_on,
        backing_off=report.backing_off,
        run_id=report.run_id,
    )
