"""Suspend and resume on the simulator: a suspended toolbox's drift is shown by ``plan``, left alone by
``apply`` and by running daemons over three cycles (on PostgreSQL, by two replicas), then fixed after
``resume``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

from reconciler.app.reconcile import reconcile_once
from reconciler.app.suspend import resume, suspend
from reconciler.core.outcomes import RunOutcome
from reconciler.core.plan import NoticeKind
from reconciler.core.verdict import GapKind
from reconciler.errors import ConfigError
from reconciler.presentation.exit_codes import apply_exit_code
from tests.app.daemon.conftest import DaemonWorld, server


def writes(world: DaemonWorld, index: int) -> dict[str, int]:
    """The calls that change a toolbox (anything but a GET)."""
    return {k: v for k, v in world.sim.counters(index).items() if not k.startswith("GET")}


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_suspended_toolbox_is_planned_not_applied_until_resumed(
    backend: str,
    request: pytest.FixtureRequest,
    world_of: Callable[..., DaemonWorld],
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = request.getfixturevalue("pg_url") if backend == "postgres" else None
    w = world_of(2, url=url)
    w.write({"tb0": [server("time")], "tb1": [server("fetch")]})
    first = w.daemon(interval=30)
    assert [r.outcome for r in first.cycle().results] == ["ok", "ok"]
    first.close()

    # The incident: a manual fix on tb0 (its server stopped by hand), then the operator suspends tb0.
    w.sim.admin(0, "POST", "/__sim/docker/stop", {"name": "time"})
    settings = w.settings()
    with pytest.raises(ConfigError, match=r"'tb9' is not in the database \(valid: tb0, tb1\)"):
        suspend(settings, "tb9", "typo")
    done = suspend(settings, "tb0", "incident 42: manual fix", by="alice@ops-1")
    assert done.environment == "tb0" and done.suspension is not None
    w.sim.admin(1, "POST", "/__sim/docker/stop", {"name": "fetch"})  # drift on tb1 too, not suspended

    # plan: the drift is shown, tb0 marked suspended.
    planned = reconcile_once(settings, [str(w.manifests)], apply=False, environ={})
    assert planned.plan is not None
    steps = sorted((s.environment_name, s.server) for s in planned.plan.steps)
    assert steps == [("tb0", "time"), ("tb1", "fetch")]
    [mark] = [n for n in planned.plan.notices if n.kind is NoticeKind.SUSPENDED]
    assert mark.environment_name == "tb0" and "alice@ops-1" in mark.message and "incident 42" in mark.message
    assert planned.outcome is RunOutcome.CHANGES and set(planned.suspended) == {"tb0"}

    # apply: tb1 fixed, tb0 untouched; not converged (exit 4: something was applied, not everything).
    before = writes(w, 0)
    applied = reconcile_once(settings, [str(w.manifests)], apply=True, environ={})
    assert [(r.step.environment_name, r.outcome) for r in applied.results] == [("tb1", "ok")]
    assert writes(w, 0) == before and w.containers(0)["time"]["state"] == "exited"
    assert applied.outcome is RunOutcome.INCOMPLETE
    assert [(g.kind, g.server) for g in applied.verdict.gaps] == [(GapKind.SUSPENDED, "time")]
    assert apply_exit_code(applied.outcome, applied_any=True) == 4

    # Running daemons (two replicas on PostgreSQL, sharing the toolboxes by leases), three cycles each:
    # tb0 stays as the operator left it, whichever replica owns it.
    replicas = [w.daemon(journal=f"journal-{i}.db", interval=30) for i in range(2 if backend == "postgres" else 1)]
    owner = None
    with caplog.at_level(logging.INFO, logger="reconciler"):
        for _ in range(3):
            seen = []
            for d in replicas:
                report = d.cycle()
                assert report.database_ok and report.results == ()
                if "tb0" in report.acted_on:
                    seen.append(d)
                    assert set(report.suspended) == {"tb0"}
                    assert [g.kind for g in report.verdict.gaps] == [GapKind.SUSPENDED]
            assert len(seen) == 1  # one replica covers tb0 each interval
            owner = seen[0]
            w.clock.advance(30)
    assert writes(w, 0) == before and w.containers(0)["time"]["state"] == "exited"
    said = [r.getMessage() for r in caplog.records if "is suspended by alice@ops-1" in r.getMessage()]
    assert {
        (getattr(r, "environment", None), getattr(r, "outcome", None))
        for r in caplog.records
        if "is suspended by" in r.getMessage()
    } == {("tb0", "suspended")}  # JSON logs can filter on them
    assert 1 <= len(said) <= len(replicas)  # once per daemon that covered it, not once per cycle
    assert owner is not None
    metrics = owner.metrics.render().decode()
    assert 'reconciler_environment_suspended{environment="tb0"} 1.0' in metrics
    assert 'reconciler_environment_verdict{environment="tb0",verdict="incomplete"} 1.0' in metrics
    assert "\nreconciler_drift_steps 1.0\n" in metrics  # the held-back step is drift, fleet-wide too
    # A suspension is the operator's choice: the fleet-wide "no successful cycle" alert does not page for it.
    assert "\nreconciler_last_success_timestamp_seconds 0.0\n" not in metrics

    # resume: the next cycle restores the declared state, and the log says so once.
    lifted = resume(settings, "tb0", by="alice@ops-1")
    assert lifted.suspension is not None and lifted.suspension.reason == "incident 42: manual fix"
    assert resume(settings, "tb0").suspension is None  # a second resume changes nothing
    with caplog.at_level(logging.INFO, logger="reconciler"):
        fixed = owner.cycle()
    assert [(r.step.environment_name, r.step.server, r.outcome) for r in fixed.results] == [("tb0", "time", "ok")]
    assert fixed.suspended == {} and fixed.verdict.complete
    assert w.containers(0)["time"]["state"] == "running"
    assert any(r.getMessage() == "environment tb0 was resumed: reconciling it again" for r in caplog.records)
    assert "reconciler_environment_suspended{" not in owner.metrics.render().decode()


def test_suspend_and_resume_are_journalled_with_who_and_why(world_of: Callable[..., DaemonWorld]) -> None:
    from reconciler.app.journal_read import journal_entries

    w = world_of(1)
    settings = w.settings()
    suspend(settings, "tb0", "incident 7", by="carol@ops")
    resume(settings, "tb0", by="dave@ops")
    entries: list[dict[str, Any]] = journal_entries(settings.journal_path, environment="tb0")
    got = [
        (e["kind"], e["outcome"], e["note"], [(s["action"], s["outcome"]) for s in e["steps"]]) for e in entries
    ]
    assert got[0][:2] == ("resume", "resumed") and got[0][2].startswith("by dave@ops: was suspended by carol@ops")
    assert got[1] == ("suspend", "suspended", "by carol@ops: incident 7", [("suspend", "ok")])
