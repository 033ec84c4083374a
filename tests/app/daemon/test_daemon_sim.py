"""The daemon on the simulator over real HTTP with a real SQLite store, driven one cycle at a time."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from prometheus_client.parser import text_string_to_metric_families

from reconciler.adapters.journal import Journal
from reconciler.app.daemon import CycleReport
from reconciler.core.plan import NoticeKind
from reconciler.errors import LockHeldError
from tests.app.daemon.conftest import CANARY, DaemonWorld, server

SECRET_ENV = {"API_KEY": {"secretFromEnv": "CANARY_VAR"}}


def actions(report: CycleReport) -> list[tuple[str, str, str, str]]:
    return sorted((r.step.environment_name, r.step.server, str(r.step.action), r.outcome) for r in report.results)


def test_converge_follow_the_manifest_back_off_and_recover(world_of: Callable[..., DaemonWorld]) -> None:
    w = world_of(3)
    w.write({"tb0": [server("sa", env=SECRET_ENV), server("sb")], "tb1": [server("sc")], "tb2": [server("sd")]})
    seen: list[str] = []
    d = w.daemon()
    d._on_step = lambda r: seen.append(f"{r.step.environment_name}/{r.step.server}")

    first = d.cycle()
    assert first.database_ok and first.manifest_valid
    assert actions(first) == [("tb0", "sa", "create", "ok"), ("tb0", "sb", "create", "ok"),
                              ("tb1", "sc", "create", "ok"), ("tb2", "sd", "create", "ok")]  # fmt: skip
    assert sorted(seen) == ["tb0/sa", "tb0/sb", "tb1/sc", "tb2/sd"]
    assert first.run_id is not None
    assert f"API_KEY={CANARY}" in w.sim.sim.env_of(0, "sa")

    idle = d.cycle()  # converged: nothing to do, nothing journalled
    assert idle.results == () and idle.run_id is None and idle.plan is not None and not idle.plan.steps

    # The manifest changes on disk: picked up by the next cycle, no restart.
    w.write({"tb0": [server("sa", env=SECRET_ENV), server("sb", image="ghcr.io/acme/sb:2.0.0")],
             "tb1": [server("sc"), server("se")], "tb2": [server("sd")]})  # fmt: skip
    second = d.cycle()
    assert actions(second) == [("tb0", "sb", "replace", "ok"), ("tb1", "se", "create", "ok")]
    assert w.containers(0)["sb"]["image"] == "ghcr.io/acme/sb:2.0.0"
    assert d.cycle().results == ()

    # tb2's agent fails every call: the others still converge, tb2 backs off.
    w.sim.sim.set_faults(2, error_rate={"*": 1.0})
    w.write({"tb0": [server("sa", env=SECRET_ENV), server("sb", image="ghcr.io/acme/sb:2.0.0")],
             "tb1": [server("sc"), server("se"), server("sf")], "tb2": [server("sd"), server("sg")]})  # fmt: skip
    faulty = d.cycle()
    assert actions(faulty) == [("tb1", "sf", "create", "ok")]
    assert faulty.unreachable == ("tb2",)
    assert d.backoff_state()["tb2"].failures == 1
    listed_before = w.sim.counters(2).get("GET /status", 0)
    skipped = d.cycle()  # within the backoff: tb2 is not even listed
    assert skipped.backing_off == ("tb2",) and skipped.results == ()
    assert w.sim.counters(2).get("GET /status", 0) == listed_before
    w.clock.advance(40)  # past 30 s (+10% jitter): tried again, fails again, waits longer
    again = d.cycle()
    assert again.unreachable == ("tb2",)
    state = d.backoff_state()["tb2"]
    assert state.failures == 2 and 54 <= state.retry_at - w.clock.monotonic() <= 66
    metrics = {s.name: s.value for f in text_string_to_metric_families(d.metrics.render().decode())
               for s in f.samples}  # fmt: skip
    assert metrics["reconciler_backing_off_environments"] == 1
    assert metrics["reconciler_unreachable_toolboxes"] == 1
    # The verdict per environment: metrics and /readyz say the same.
    verdicts = {(s.labels["environment"], s.labels["verdict"]): s.value
                for f in text_string_to_metric_families(d.metrics.render().decode()) for s in f.samples
                if s.name == "reconciler_environment_verdict"}  # fmt: skip
    assert verdicts[("tb2", "incomplete")] == 1 and verdicts[("tb2", "complete")] == 0
    assert verdicts[("tb1", "complete")] == 1
    ready, why = d.readiness()
    assert ready and "tb2: incomplete" in why and "tb1: complete" in why and "tb2 at 127." in why
    assert not again.ok and again.verdict.environments() == ("tb2",)

    w.sim.sim.clear_faults(2)
    w.clock.advance(70)
    recovered = d.cycle()
    assert actions(recovered) == [("tb2", "sg", "create", "ok")]
    assert d.backoff_state() == {} and recovered.unreachable == ()
    assert d.cycle().results == ()
    assert w.creates() == 8  # seven servers once each, plus the re-create of sb when it was replaced
    assert w.sim.counters(0).get("DELETE /tools/{name}", 0) == 1

    # Nothing secret reached the journal.
    d.close()
    j = Journal(w.tmp / "journal.db")
    try:
        text = repr(j.runs(limit=500)) + repr(j.steps())
    finally:
        j.close()
    assert CANARY not in text


def test_invalid_manifest_keeps_the_last_good_state_and_never_deletes(
    world_of: Callable[..., DaemonWorld],
) -> None:
    w = world_of(2)
    w.write({"tb0": [server("sa"), server("sb")], "tb1": [server("sc")]}, prune=True)
    d = w.daemon()
    assert len(d.cycle().results) == 3
    # tb0's file breaks (b removed at the same time, which would prune it if read); tb1's file changes.
    (w.manifests / "tb0.yaml").write_text("apiVersion: mcp-reconciler/v1\nkind: Toolbox\nenvironment: tb0\n"
                                          "servers:\n  - name: sa\n    image: [not, valid\n")  # fmt: skip
    (w.manifests / "tb1.yaml").write_text(
        "apiVersion: mcp-reconciler/v1\nkind: Toolbox\nenvironment: tb1\npolicy: {prune: true}\nservers:\n"
        "  - {name: sc, image: 'ghcr.io/acme/sc:1.0.0', transport: sse, endpoint: /sse, port: 8080}\n"
        "  - {name: sh, image: 'ghcr.io/acme/sh:1.0.0', transport: sse, endpoint: /sse, port: 8080}\n"
    )
    report = d.cycle()
    assert not report.manifest_valid and report.errors
    assert [(r.step.server, str(r.step.action)) for r in report.results] == [("sh", "create")]
    assert set(w.containers(0)) == {"sa", "sb"}  # nothing deleted on the broken toolbox
    text = {s.name: s.value for f in text_string_to_metric_families(d.metrics.render().decode())
            for s in f.samples}  # fmt: skip
    assert text["reconciler_manifest_valid"] == 0
    d.close()
    j = Journal(w.tmp / "journal.db")
    try:
        checks = [r for r in j.runs(limit=50) if r.kind == "daemon-check"]
    finally:
        j.close()
    assert checks and checks[0].outcome == "manifest-invalid"


def test_manifests_becoming_valid_again_is_logged_at_info(
    world_of: Callable[..., DaemonWorld], caplog: pytest.LogCaptureFixture
) -> None:
    w = world_of(1)
    w.write({"tb0": [server("sa")]})
    d = w.daemon()
    assert d.cycle().ok
    good = (w.manifests / "tb0.yaml").read_text()
    (w.manifests / "tb0.yaml").write_text("environment: tb0\nservers: [\n")
    assert not d.cycle().manifest_valid
    (w.manifests / "tb0.yaml").write_text(good)
    with caplog.at_level(logging.INFO, logger="reconciler"):
        assert d.cycle().manifest_valid
    assert [r.levelno for r in caplog.records if r.getMessage() == "manifests are valid again"] == [logging.INFO]


def test_invalid_manifest_on_the_first_cycle_acts_on_nothing(world_of: Callable[..., DaemonWorld]) -> None:
    w = world_of(1)
    (w.manifests / "tb0.yaml").write_text("environment: tb0\nservers: {}\n")
    d = w.daemon()
    report = d.cycle()
    assert not report.manifest_valid and report.results == ()
    assert w.sim.counters(0).get("POST /tools", 0) == 0


def test_flap_guard_stalls_a_server_that_never_settles(world_of: Callable[..., DaemonWorld]) -> None:
    w = world_of(1)
    w.write({"tb0": [server("crashy"), server("calm")]})
    d = w.daemon()
    assert len(d.cycle().results) == 2
    restarts = []
    for _ in range(2):  # it exits right after every start: restarted twice...
        w.sim.admin(0, "POST", "/__sim/exit-after", {"name": "crashy", "seconds": 0})
        restarts.append(actions(d.cycle()))
    assert restarts == [[("tb0", "crashy", "restart", "ok")]] * 2
    w.sim.admin(0, "POST", "/__sim/exit-after", {"name": "crashy", "seconds": 0})
    third = d.cycle()  # ...then left alone, and shown as stalled
    assert third.results == () and third.stalled == ("tb0/crashy",)
    assert third.plan is not None
    assert [n.server for n in third.plan.notices if n.kind is NoticeKind.STALLED] == ["crashy"]
    assert d.cycle().stalled == ("tb0/crashy",)
    # A change of its spec in the manifest lifts the stall.
    w.write({"tb0": [server("crashy", image="ghcr.io/acme/crashy:1.0.1"), server("calm")]})
    lifted = d.cycle()
    assert actions(lifted) == [("tb0", "crashy", "replace", "ok")] and lifted.stalled == ()


def test_a_second_daemon_on_one_sqlite_file_is_refused(world_of: Callable[..., DaemonWorld]) -> None:
    w = world_of(1)
    w.write({"tb0": [server("sa")]})
    w.daemon()
    with pytest.raises(LockHeldError, match=r"another reconciler daemon is running on .*state\.db"):
        w.daemon(journal="other-journal.db")


def test_once_returns_zero_and_journals_the_creates(world_of: Callable[..., DaemonWorld]) -> None:
    w = world_of(2)
    w.write({"tb0": [server("sa")], "tb1": [server("sb")]})
    assert w.daemon(once=True).run() == 0
    j = Journal(w.tmp / "journal.db")
    try:
        steps = sorted((s.environment, s.server, s.action, s.outcome) for s in j.steps())
    finally:
        j.close()
    assert steps == [("tb0", "sa", "create", "ok"), ("tb1", "sb", "create", "ok")]


def test_failed_steps_back_off_only_their_toolbox(world_of: Callable[..., DaemonWorld]) -> None:
    w = world_of(2)
    w.write({"tb0": [server("sa")], "tb1": [server("sb")]})
    w.sim.sim.set_faults(1, error_rate={"POST /tools": 1.0})  # tb1 lists fine but every deploy fails
    d = w.daemon()
    report = d.cycle()
    assert actions(report) == [("tb0", "sa", "create", "ok"), ("tb1", "sb", "create", "failed")]
    assert report.unreachable == () and d.backoff_state()["tb1"].failures == 1
    assert d.cycle().backing_off == ("tb1",)
    w.sim.sim.clear_faults(1)
    w.clock.advance(40)
    assert actions(d.cycle()) == [("tb1", "sb", "create", "ok")]
    assert d.backoff_state() == {}
