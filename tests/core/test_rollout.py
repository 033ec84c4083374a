"""The rollout planner: which steps form a rollout, its waves, when toolboxes may start, halts and their memory."""

from __future__ import annotations

from reconciler.core.outcomes import RunOutcome, StepOutcome
from reconciler.core.plan import Action, NoticeKind, Plan, Step
from reconciler.core.rollout import (
    Halt,
    Progress,
    RolloutIndex,
    RolloutSettings,
    halt_notices,
    held_back,
    hold_halted,
    plan_rollouts,
    record,
    remember,
)
from reconciler.core.verdict import Verdict, apply_outcome, gap_kind, verdict_of
from reconciler.model.spec import ServerSpec


def replace_step(env: str, server: str = "time", spec_hash: str = "h2", image: str = "acme/time:2") -> Step:
    spec = ServerSpec(name=server, image=image, transport="sse", port=8080)
    return Step(f"id-{env}", env, server, Action.REPLACE, "image differs", desired=spec, spec_hash=spec_hash,
                instance_id=f"i-{env}")  # fmt: skip


def envs(n: int) -> list[str]:
    return [f"tb{i:02d}" for i in range(n)]


def test_an_image_bump_across_ten_toolboxes_is_one_rollout_first_wave_then_the_rest() -> None:
    steps = [replace_step(e) for e in reversed(envs(10))]  # plan order does not decide the waves
    [r] = plan_rollouts(steps, RolloutSettings(first_wave=1, max_in_flight=3))
    assert (r.server, r.spec_hash, r.image) == ("time", "h2", "acme/time:2")
    first, rest = r.waves
    assert [t.environment_name for t in first.toolboxes] == ["tb00"]
    assert [t.environment_name for t in rest.toolboxes] == envs(10)[1:]
    assert (first.number, rest.number, rest.max_in_flight) == (1, 2, 3)
    [r2] = plan_rollouts(steps, RolloutSettings(first_wave=3))
    assert [t.environment_name for t in r2.waves[0].toolboxes] == ["tb00", "tb01", "tb02"]
    assert r2.waves[1].max_in_flight == 10  # the documented default


def test_what_is_not_a_rollout() -> None:
    one = [replace_step("tb00"), replace_step("tb01", server="other")]  # each server on one toolbox only
    assert plan_rollouts(one, RolloutSettings()) == ()
    two_hashes = [replace_step("tb00", spec_hash="a"), replace_step("tb01", spec_hash="b")]
    assert plan_rollouts(two_hashes, RolloutSettings()) == ()
    spec = ServerSpec(name="time", image="acme/time:2", transport="sse")
    creates = [Step(f"id-{e}", e, "time", Action.CREATE, "absent", desired=spec, spec_hash="h2") for e in envs(5)]
    restarts = [Step(f"id-{e}", e, "time", Action.RESTART, "exited") for e in envs(5)]
    assert plan_rollouts(creates + restarts, RolloutSettings()) == ()  # a fleet's first deploy keeps its speed
    assert plan_rollouts([replace_step(e) for e in envs(5)], RolloutSettings(enabled=False)) == ()
    # A first wave as large as the rollout: one wave.
    [whole] = plan_rollouts([replace_step(e) for e in envs(2)], RolloutSettings(first_wave=5))
    assert len(whole.waves) == 1 and len(whole.toolboxes) == 2


def test_toolboxes_wait_for_the_first_wave_of_each_rollout_they_take_part_in() -> None:
    # Two overlapping rollouts: a on tb00..tb04, b on tb03..tb07, and tb09 outside both.
    steps = [replace_step(e, server="a") for e in envs(5)] + [replace_step(e, server="b") for e in envs(8)[3:]]
    rollouts = plan_rollouts(steps, RolloutSettings(max_in_flight=2))
    index = RolloutIndex(rollouts)
    ids = [f"id-{e}" for e in [*envs(8), "tb09"]]
    progress = Progress()
    # tb00 is a's first wave; b's first wave is tb03, which is in a's rest: it waits for tb00.
    assert index.ready(progress, ids) == ("id-tb00", "id-tb09")
    assert index.in_flight(["id-tb00", "id-tb09"]) is None
    progress = record(progress, index, steps[0], StepOutcome.OK, "")
    ready = index.ready(progress, [e for e in ids if e not in ("id-tb00", "id-tb09")])
    assert ready == ("id-tb01", "id-tb02", "id-tb03")  # a's rest, and b's first wave (tb03, in a's rest too)
    assert index.in_flight(ready) == 2
    for step in steps:
        if step.environment_name == "tb03":
            progress = record(progress, index, step, StepOutcome.OK, "")
    rest = ["id-tb04", "id-tb05", "id-tb06", "id-tb07"]
    assert index.ready(progress, rest) == tuple(rest)


def test_every_outcome_but_ok_halts_the_rollout_and_holds_its_remaining_steps() -> None:
    steps = [replace_step(e) for e in envs(4)]
    index = RolloutIndex(plan_rollouts(steps, RolloutSettings()))
    for outcome in (StepOutcome.FAILED, StepOutcome.PENDING, StepOutcome.SKIPPED, "unready"):
        progress = record(Progress(), index, steps[0], outcome, "pull access denied")
        [halt] = progress.halts.values()
        assert halt.reason == f"rollout halted: time on tb00 {outcome}: pull access denied"
        assert halt.conclusive == (outcome in (StepOutcome.FAILED, "unready"))
        held = held_back(progress, index, steps[2])
        assert (
            held == f"rollout halted: time on tb00 {outcome}: pull access denied; tb02 keeps the version it runs"
        )
    ok = record(Progress(), index, steps[0], StepOutcome.OK, "")
    assert ok.halts == {} and held_back(ok, index, steps[1]) is None
    # The first not-ok step is the reason; a later one does not replace it.
    progress = record(record(Progress(), index, steps[0], "failed", "first"), index, steps[1], "failed", "second")
    assert progress.halts[("time", "h2")].error == "first"
    other = replace_step("tb00", server="unrelated")
    assert held_back(progress, index, other) is None


def test_a_halted_rollout_is_held_by_the_daemon_until_the_spec_changes() -> None:
    steps = tuple(replace_step(e) for e in envs(3))
    redeploy = Step("id-tb09", "tb09", "time", Action.CREATE, "absent", spec_hash="h2")
    plan = Plan(steps=(*steps, redeploy, replace_step("tb00", server="other", spec_hash="x")))
    halt = Halt("time", "h2", "acme/time:2", "id-tb09", "tb09", "failed", "manifest unknown")
    halted = remember({}, plan, [halt, Halt("b", "h", None, "id-tb00", "tb00", "pending", "")])
    assert halted == {("time", "h2"): halt}  # an inconclusive halt (pending) is not remembered
    held = hold_halted(plan, halted)
    assert [(s.environment_name, s.server) for s in held.steps] == [("tb00", "other")]
    assert [(n.environment_name, n.kind) for n in held.notices] == [
        (e, NoticeKind.ROLLOUT_HELD) for e in ("tb00", "tb01", "tb02", "tb09")
    ]
    assert "held until its spec changes again" in held.notices[0].message
    assert not verdict_of(held).complete  # held steps are a gap: never "converged"
    # The spec changes again (another hash): the halt is forgotten and the new rollout goes ahead.
    bumped = Plan(steps=tuple(replace_step(e, spec_hash="h3") for e in envs(3)))
    assert remember(halted, bumped, ()) == {}
    assert hold_halted(bumped, remember(halted, bumped, ())) == bumped


def test_a_halt_is_one_notice_on_the_toolbox_where_it_stopped() -> None:
    halt = Halt("time", "h2", "acme/time:2", "id-tb00", "tb00", "failed", "manifest unknown")
    held = [replace_step(e) for e in envs(14)[1:]] + [replace_step("tb99", server="other")]
    [notice] = halt_notices([halt], held)
    assert (notice.environment_id, notice.server, notice.kind) == ("id-tb00", "time", NoticeKind.ROLLOUT_HALTED)
    assert notice.message == (
        "rollout halted: time on tb00 failed: manifest unknown (rollout of time to acme/time:2); 13 toolbox(es) "
        "keep the version they run: tb01, tb02, tb03, tb04, tb05, tb06, tb07, tb08, tb09, tb10 and 3 more"
    )
    assert gap_kind(notice) is not None


def test_a_halted_rollout_makes_the_run_partial() -> None:
    outcomes = [StepOutcome.FAILED, *[StepOutcome.SKIPPED] * 9]
    assert apply_outcome(Verdict(), outcomes, plan_errors=False, stopped=False) is RunOutcome.FAILED
    assert apply_outcome(Verdict(), outcomes, plan_errors=False, stopped=False, halted=True) is RunOutcome.PARTIAL
    assert apply_outcome(Verdict(), outcomes, plan_errors=False, stopped=True, halted=True) is RunOutcome.STOPPED
