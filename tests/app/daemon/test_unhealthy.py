"""A server that stops answering under a running daemon: a probe-failed notice first, ``unhealthy`` (notice and
gauge) after failureThreshold cycles, ``onUnhealthy: restart`` restarts it, and the flap guard leaves it alone,
stalled, once two restarts did not help. The real prober, the simulator's MCP servers."""

from __future__ import annotations

from typing import Any

from reconciler.app.daemon import Daemon, DaemonConfig
from reconciler.app.stores import open_store
from reconciler.core.outcomes import StepOutcome
from reconciler.core.plan import Action, NoticeKind
from tests.app.daemon.conftest import FAST, DaemonWorld

IMAGE = "ghcr.io/acme/time:1.0.0"


def kinds(report: Any) -> list[NoticeKind]:
    return sorted(n.kind for n in report.plan.notices)


def steps(report: Any) -> list[tuple[str, str]]:
    return [(str(r.step.action), str(r.outcome)) for r in report.results]


def test_unhealthy_after_the_threshold_restarted_twice_then_stalled(world_of: Any) -> None:
    w: DaemonWorld = world_of(1)
    w.write({"tb0": [{"name": "time", "image": IMAGE, "transport": "streamable-http", "endpoint": "/mcp",
                      "port": 8080, "hostPort": 31811, "onUnhealthy": "restart",
                      "readiness": {"timeout": 1, "failureThreshold": 2}}]})  # fmt: skip
    daemon = Daemon(w.settings(probe_timeout=2.0), DaemonConfig(paths=(str(w.manifests),)), environ={},
                    clock=w.clock, executor_config=FAST, sleep=w.clock.advance)  # fmt: skip
    w.daemons.append(daemon)
    assert steps(daemon.cycle()) == [("create", "ok")]
    assert daemon.cycle().plan.steps == ()  # healthy: nothing to do

    w.sim.sim.set_mcp(IMAGE, fault="broken")
    first = daemon.cycle()
    assert kinds(first) == [NoticeKind.PROBE_FAILED]
    assert steps(first) == [("sync-status", "ok")]  # running, but its server does not answer: error_runtime
    assert "reconciler_server_unhealthy{" not in daemon.metrics.render().decode()
    failing = 'reconciler_server_probe_failures{environment="tb0",server="time"}'
    assert f"{failing} 1.0" in daemon.metrics.render().decode()  # counted from the first failed probe

    second = daemon.cycle()  # the threshold: unhealthy, and restarted; it stays unready
    assert kinds(second) == [NoticeKind.UNHEALTHY]
    assert steps(second) == [("restart", "unready")]
    assert 'reconciler_server_unhealthy{environment="tb0",server="time"} 1.0' in daemon.metrics.render().decode()
    assert f"{failing} 2.0" in daemon.metrics.render().decode()
    assert steps(daemon.cycle()) == [("restart", "unready")]  # the second restart

    stalled = daemon.cycle()  # two restarts did not help: left alone
    assert stalled.results == ()
    assert kinds(stalled) == [NoticeKind.STALLED, NoticeKind.UNHEALTHY]
    assert stalled.stalled == ("tb0/time",)
    assert w.sim.counters(0).get("POST /tools/{name}/start", 0) == 2

    w.sim.sim.set_mcp(IMAGE, fault="none")  # fixed behind the daemon's back: healthy again, series gone
    healed = daemon.cycle()
    assert [s.action for s in healed.plan.steps] == [Action.SYNC_STATUS]
    assert all(r.outcome is StepOutcome.OK for r in healed.results)
    assert "reconciler_server_unhealthy{" not in daemon.metrics.render().decode()
    assert failing not in daemon.metrics.render().decode()


def test_the_daemons_probe_errors_are_redacted_of_the_manifests_secrets(world_of: Any) -> None:
    # The server echoes what it was given in its error (here the handshake error's text is the secret value):
    # the daemon's recorded health, notices and step messages must not carry it.
    w: DaemonWorld = world_of(1)
    secret = "simulated handshake failure"
    w.write({"tb0": [{"name": "time", "image": IMAGE, "transport": "streamable-http", "endpoint": "/mcp",
                      "port": 8080, "hostPort": 31812, "env": {"KEY": {"secretFromEnv": "TIME_KEY"}},
                      "readiness": {"timeout": 0.2}}]})  # fmt: skip
    w.sim.sim.set_mcp(IMAGE, fault="handshake-error")
    daemon = Daemon(w.settings(probe_timeout=2.0), DaemonConfig(paths=(str(w.manifests),)),
                    environ={"TIME_KEY": secret}, clock=w.clock, executor_config=FAST)  # fmt: skip
    w.daemons.append(daemon)
    created = daemon.cycle()
    assert steps(created) == [("create", "unready")]
    again = daemon.cycle()
    assert kinds(again) == [NoticeKind.PROBE_FAILED]
    said = [r.message for r in created.results] + [n.message for n in again.plan.notices]
    assert all("[redacted]" in m and secret not in m for m in said), said
    store = open_store(w.database_url)
    try:
        recorded = repr(store.recorded_health()) + repr([i.error_message for i in store.observe_instances()])
    finally:
        store.close()
    assert "[redacted]" in recorded and secret not in recorded
