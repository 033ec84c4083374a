"""Rollouts on the simulator over real HTTP: an image bump across 10 toolboxes, broken or good, cycle by cycle."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from reconciler.adapters.journal import Journal
from reconciler.app.daemon import Daemon
from reconciler.app.listeners import facts_of
from reconciler.core import notify
from reconciler.core.outcomes import RunOutcome, StepOutcome
from reconciler.core.plan import NoticeKind
from reconciler.runtime.tick import DaemonConfig
from tests.app.daemon.conftest import CANARY, FAST, DaemonWorld, server

OLD, BROKEN, GOOD = "ghcr.io/acme/time:1.0.0", "ghcr.io/acme/time:2.0.0", "ghcr.io/acme/time:3.0.0"


def fleet(w: DaemonWorld, image: str) -> None:
    w.write({name: [server("time", image=image)] for name in w.names})


def images(w: DaemonWorld) -> dict[str, str | None]:
    return {name: (w.containers(i).get("time") or {}).get("image") for i, name in enumerate(w.names)}


def journal_steps(w: DaemonWorld, run_id: int) -> list[tuple[str, str, str | None, str | None]]:
    j = Journal(Path(w.tmp / "journal.db"), read_only=True)
    try:
        return sorted((s.environment, s.action, s.outcome, s.error) for s in j.steps(run_id=run_id))
    finally:
        j.close()


def test_a_broken_image_halts_after_the_first_wave_stays_halted_and_a_new_spec_rolls_through(
    world_of: Callable[..., DaemonWorld],
) -> None:
    w = world_of(10)
    fleet(w, OLD)
    d = w.daemon()
    first = d.cycle()  # ten creates: a fleet's first deploy is not a rollout
    assert [r.outcome for r in first.results] == ["ok"] * 10 and first.plan is not None and not first.plan.rollouts

    w.sim.sim.set_image(BROKEN, missing=True)  # the pull fails like Docker's "manifest unknown"
    fleet(w, BROKEN)
    creates = w.creates()
    halted = d.cycle()
    assert halted.plan is not None
    [rollout] = halted.plan.rollouts
    assert [[t.environment_name for t in wave.toolboxes] for wave in rollout.waves] == [["tb0"], w.names[1:]]
    by_env = {r.step.environment_name: r for r in halted.results}
    assert by_env["tb0"].outcome == StepOutcome.FAILED
    assert w.creates() == creates + FAST.retries  # only tb0 was sent a deploy (tried FAST.retries times)
    for name in w.names[1:]:
        r = by_env[name]
        assert r.outcome == StepOutcome.SKIPPED and r.notice is NoticeKind.ROLLOUT_HELD
        assert r.message.startswith("rollout halted: time on tb0 failed: ")
        assert r.message.endswith(f"; {name} keeps the version it runs")
    assert halted.outcome is RunOutcome.PARTIAL
    [halt] = halted.applied.halts
    assert (halt.server, halt.environment_name, halt.outcome) == ("time", "tb0", "failed")
    # One rollout-halted notice, on tb0, which the notifier delivers once (and the step that failed).
    assert halted.plan is not None
    [notice] = [n for n in halted.plan.notices if n.kind is NoticeKind.ROLLOUT_HALTED]
    assert (
        notice.environment_name == "tb0" and "9 toolbox(es) keep the version they run: tb1, tb2" in notice.message
    )
    events = notify.events_of(facts_of(halted), {}, 3)
    assert sorted((e.kind, e.environment) for e in events) == [("rollout-halted", "tb0"), ("step-failed", "tb0")]
    # The other nine keep the old version (the live listings say so); tb0's old container was replaced.
    assert images(w) == {"tb0": None, **dict.fromkeys(w.names[1:], OLD)}
    assert halted.run_id is not None
    journal = journal_steps(w, halted.run_id)
    assert journal[0][:3] == ("tb0", "replace", "failed")
    assert all(s[2] == "skipped" and "rollout halted: time on tb0 failed" in (s[3] or "") for s in journal[1:])
    assert len(journal) == 10

    # The next cycles do not retry the fleet with the broken image: the rollout stays halted.
    w.clock.advance(120)  # past tb0's backoff too
    for _ in range(2):
        again = d.cycle()
        assert again.results == () and again.run_id is None and again.plan is not None
        held = [n for n in again.plan.notices if n.kind is NoticeKind.ROLLOUT_HELD]
        assert sorted(n.environment_name for n in held) == w.names  # tb0's re-deploy is held too
        assert notify.events_of(facts_of(again), {}, 3) == ()  # the halt was told once, not every interval
        assert not again.verdict.complete  # a halted rollout is never "in sync"
    assert w.creates() == creates + FAST.retries
    assert images(w)["tb1"] == OLD

    # A new spec (a good image) forgets the halt and rolls through every toolbox.
    fleet(w, GOOD)
    good = d.cycle()
    assert good.outcome is RunOutcome.CONVERGED and good.plan is not None
    assert [r.outcome for r in good.results] == ["ok"] * 10
    assert images(w) == dict.fromkeys(w.names, GOOD)
    assert d.cycle().results == ()


def test_a_failure_after_the_first_wave_stops_the_rest_with_a_bounded_number_in_flight(
    world_of: Callable[..., DaemonWorld],
) -> None:
    w = world_of(10)
    settings = replace(w.settings(), rollout_max_in_flight=1)
    d = Daemon(settings, DaemonConfig(paths=(str(w.manifests),)), environ={"CANARY_VAR": CANARY}, clock=w.clock,
               executor_config=FAST)  # fmt: skip
    w.daemons.append(d)
    fleet(w, OLD)
    d.cycle()
    fleet(w, BROKEN)  # not declared broken: the good case rolls through every toolbox, one at a time
    rolled = d.cycle()
    assert rolled.outcome is RunOutcome.CONVERGED and images(w) == dict.fromkeys(w.names, BROKEN)
    assert rolled.plan is not None and rolled.plan.rollouts[0].waves[1].max_in_flight == 1

    w.sim.sim.set_faults(5, error_rate={"POST /tools": 1.0})  # tb5's deploys fail
    fleet(w, GOOD)
    halted = d.cycle()
    outcomes = {r.step.environment_name: r.outcome for r in halted.results}
    assert outcomes == {**{f"tb{i}": "ok" for i in range(5)}, "tb5": "failed",
                        **{f"tb{i}": "skipped" for i in range(6, 10)}}  # fmt: skip
    assert images(w) == {**{f"tb{i}": GOOD for i in range(5)}, "tb5": None,
                         **{f"tb{i}": BROKEN for i in range(6, 10)}}  # fmt: skip
    assert halted.outcome is RunOutcome.PARTIAL


def test_no_rollout_applies_everything_at_once(world_of: Callable[..., DaemonWorld]) -> None:
    w = world_of(3)
    d = Daemon(replace(w.settings(), rollout=False), DaemonConfig(paths=(str(w.manifests),)),
               environ={"CANARY_VAR": CANARY}, clock=w.clock, executor_config=FAST)  # fmt: skip
    w.daemons.append(d)
    fleet(w, OLD)
    d.cycle()
    w.sim.sim.set_image(BROKEN, missing=True)
    fleet(w, BROKEN)
    report = d.cycle()
    assert report.plan is not None and report.plan.rollouts == ()
    assert [r.outcome for r in report.results] == ["failed"] * 3
    assert report.outcome is RunOutcome.FAILED


def mcp_fleet(w: DaemonWorld, image: str) -> None:
    # A published sse server: its readiness is the MCP handshake at the toolbox's address and hostPort.
    spec = server("time", image=image, hostPort=31801, readiness={"timeout": 0.5})
    w.write({name: [spec] for name in w.names})


def test_an_image_whose_server_never_answers_mcp_is_unready_and_halts_the_rollout(
    world_of: Callable[..., DaemonWorld],
) -> None:
    w = world_of(10)
    d = w.daemon()
    mcp_fleet(w, OLD)
    assert [r.outcome for r in d.cycle().results] == ["ok"] * 10  # every server answered the handshake

    w.sim.sim.set_mcp(BROKEN, fault="broken")  # deployed and running, but its MCP server never answers
    mcp_fleet(w, BROKEN)
    halted = d.cycle()
    by_env = {r.step.environment_name: r for r in halted.results}
    assert by_env["tb0"].outcome == StepOutcome.UNREADY
    assert all(by_env[n].outcome == StepOutcome.SKIPPED for n in w.names[1:])
    assert by_env["tb1"].message.startswith("rollout halted: time on tb0 unready: ")
    assert halted.outcome is RunOutcome.PARTIAL
    assert images(w) == {"tb0": BROKEN, **dict.fromkeys(w.names[1:], OLD)}  # the other nine keep the old version
    assert halted.plan is not None
    [notice] = [n for n in halted.plan.notices if n.kind is NoticeKind.ROLLOUT_HALTED]
    assert notice.environment_name == "tb0" and "unready" in notice.message
    again = d.cycle()
    assert not any(r.step.action == "replace" for r in again.results)  # held: the fleet is not retried
    assert images(w)["tb9"] == OLD
    mcp_fleet(w, GOOD)  # a good image: every toolbox replaced, each ok only once its server answers MCP
    good = d.cycle()
    assert [r.outcome for r in good.results] == ["ok"] * 10 and good.outcome is RunOutcome.CONVERGED
    assert images(w) == dict.fromkeys(w.names, GOOD)
