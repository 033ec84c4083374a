"""The fleet status the page shows, built from cycle reports in memory: verdicts, carrying over, redaction."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from reconciler.core.backoff import BackoffState
from reconciler.core.observed import LiveContainer, LiveListing, Observed, RecordedEnvironment, RecordedState
from reconciler.core.outcomes import StepOutcome
from reconciler.core.plan import Action, Plan, Step
from reconciler.core.verdict import verdict_of
from reconciler.model.spec import Desired, EnvironmentSpec, ServerSpec, SourceRef
from reconciler.runtime.cycle_data import CycleReport
from reconciler.runtime.execute import ApplyResult, StepResult
from reconciler.runtime.fleet_status import EnvVerdict, FleetStatus, update

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
SECRET = "s3cr3t-value-that-must-not-show"


def spec(name: str, *servers: str) -> EnvironmentSpec:
    return EnvironmentSpec(
        name,
        tuple(
            ServerSpec(s, f"img/{s}:1", "sse", "/sse", 8080, source=SourceRef(f"{name}.yaml", 5)) for s in servers
        ),
        source=SourceRef(f"{name}.yaml", 1),
    )


DESIRED = Desired((spec("tb0", "a", "b"), spec("tb1", "c")))
ROWS = (
    RecordedEnvironment("e0", "tb0", "10.0.0.1", "active"),
    RecordedEnvironment("e1", "tb1", "10.0.0.2", "active"),
)


def observed() -> Observed:
    live = {
        "e0": LiveListing("e0", (LiveContainer("a", "running", "img/a:1"),), "c"),
        "e1": LiveListing("e1", (LiveContainer("c", "running", "img/c:1"),), "c"),
    }
    return Observed(RecordedState(ROWS, ()), live)


def test_a_failed_step_makes_its_environment_failed_and_every_text_is_redacted() -> None:
    step = Step("e0", "tb0", "b", Action.CREATE, f"b is declared and not deployed ({SECRET})")
    failure = StepResult(step, StepOutcome.FAILED, f"500 from the agent echoing API_KEY={SECRET}")
    plan = Plan((step,))
    obs = observed()
    report = CycleReport(plan, verdict=verdict_of(plan, obs), observed=obs, acted_on=("tb0", "tb1"), run_id=9,
                         applied=ApplyResult((failure,)))  # fmt: skip
    fleet = update(FleetStatus(), report, desired=DESIRED, backoff={}, now=NOW, secrets=[SECRET])
    envs = fleet.by_name()
    assert envs["tb0"].verdict is EnvVerdict.FAILED and envs["tb1"].verdict is EnvVerdict.IN_SYNC
    assert envs["tb0"].last_success is None and envs["tb1"].last_success == NOW
    b = next(s for s in envs["tb0"].servers if s.name == "b")
    assert (b.step, b.step_outcome, b.run_id, b.live_state, b.healthy) == ("create", "failed", 9, None, False)
    assert (envs["tb0"].declared, envs["tb0"].running, envs["tb0"].unhealthy) == (2, 1, 1)
    assert (
        SECRET not in repr(fleet) and "[redacted]" in envs["tb0"].reason and "[redacted]" in (b.step_error or "")
    )


def test_a_skipped_environment_keeps_what_the_last_cycle_saw_and_says_why() -> None:
    plan = Plan(())
    obs = observed()
    first = update(FleetStatus(), CycleReport(plan, observed=obs, acted_on=("tb0", "tb1")), desired=DESIRED,
                   backoff={}, now=NOW)  # fmt: skip
    skipped = CycleReport(plan, observed=obs, acted_on=("tb1",), backing_off=("tb0",), locked_elsewhere=())
    backoff = {"tb0": BackoffState(2, 99.0, f"unreachable: token {SECRET}")}
    later = update(first, skipped, desired=DESIRED, backoff=backoff, now=NOW, secrets=[SECRET]).by_name()
    assert later["tb0"].verdict is EnvVerdict.BACKING_OFF and "failed 2 time(s)" in later["tb0"].reason
    assert SECRET not in later["tb0"].reason
    assert later["tb0"].servers == first.by_name()["tb0"].servers and later["tb0"].last_success == NOW
    failed = CycleReport(None, database_ok=False, errors=("database unreachable: x",))
    down = update(first, failed, desired=DESIRED, backoff={}, now=NOW)
    assert down.environments == first.environments and down.errors == ("database unreachable: x",)
    assert down.cycles == 2 and down.cycle_ok is False


def _in_sync_world() -> tuple[Desired, Observed]:
    from tests.core.golden_io import instance_from_config

    rows = tuple(
        instance_from_config(f"i-{s}", env, s, "running", {"managed_by": "mcp-reconciler", "image": f"img/{s}:1"})
        for env, s in (("e0", "a"), ("e0", "b"), ("e1", "c"))
    )
    a, b, c = (LiveContainer(s, "running", f"img/{s}:1") for s in "abc")
    live = {"e0": LiveListing("e0", (a, b), "c"), "e1": LiveListing("e1", (c,), "c")}
    return DESIRED, Observed(RecordedState(ROWS, rows), live)


def _report(obs: Observed, plan: Plan | None = None, **kw: object) -> CycleReport:
    plan = plan or Plan(())
    return CycleReport(plan, verdict=verdict_of(plan, obs), observed=obs, acted_on=("tb0", "tb1"), **kw)  # type: ignore[arg-type]


LATER = datetime(2026, 11, 27, 12, 5, tzinfo=UTC)


def test_an_in_sync_environment_keeps_its_entry_with_the_new_time() -> None:
    desired, obs = _in_sync_world()
    first = update(FleetStatus(), _report(obs), desired=desired, backoff={}, now=NOW)
    assert set(first.made) == {"tb0", "tb1"}
    # The next cycle's objects are new (decoded and listed again) with the same values.
    again = Observed(RecordedState(ROWS, tuple(replace(r) for r in obs.recorded.instances)),
                     {k: replace(v) for k, v in obs.live.items()})  # fmt: skip
    second = update(first, _report(again), desired=desired, backoff={}, now=LATER)
    slow = update(replace(first, made={}), _report(again), desired=desired, backoff={}, now=LATER)
    assert second == slow and second.environments == slow.environments
    tb0 = second.by_name()["tb0"]
    assert tb0.servers is first.by_name()["tb0"].servers  # kept, not built again
    assert (tb0.last_cycle, tb0.last_success, tb0.verdict) == (LATER, LATER, EnvVerdict.IN_SYNC)


def _entry_changes() -> dict[str, Callable[[Desired, Observed], tuple[Desired, Observed, dict[str, Any]]]]:
    """Each input of an in-sync entry, changed on tb0 (with what else ``update`` is given)."""

    def listing(state: str, image: str) -> Callable[[Desired, Observed], tuple[Desired, Observed, dict[str, Any]]]:
        def change(d: Desired, o: Observed) -> tuple[Desired, Observed, dict[str, Any]]:
            old = o.live["e0"]
            assert isinstance(old, LiveListing)
            containers = (replace(old.containers[0], state=state, image=image), *old.containers[1:])  # type: ignore[arg-type]
            return d, replace(o, live={**o.live, "e0": replace(old, containers=containers)}), {}

        return change

    def row(**fields: object) -> Callable[[Desired, Observed], tuple[Desired, Observed, dict[str, Any]]]:
        def change(d: Desired, o: Observed) -> tuple[Desired, Observed, dict[str, Any]]:
            rows = tuple(replace(r, **fields) if r.name == "a" else r for r in o.recorded.instances)  # type: ignore[arg-type]
            return d, replace(o, recorded=replace(o.recorded, instances=rows)), {}

        return change

    def address(d: Desired, o: Observed) -> tuple[Desired, Observed, dict[str, Any]]:
        envs = tuple(replace(e, address="10.9.9.9") if e.id == "e0" else e for e in o.recorded.environments)
        return d, replace(o, recorded=replace(o.recorded, environments=envs)), {}

    def servers(d: Desired, o: Observed) -> tuple[Desired, Observed, dict[str, Any]]:
        return replace(d, environments=(spec("tb0", "a", "b", "z"), d.environments[1])), o, {}

    def lines(d: Desired, o: Observed) -> tuple[Desired, Observed, dict[str, Any]]:
        moved = replace(d.environments[0], source=SourceRef("elsewhere/tb0.yaml", 1))
        return replace(d, environments=(moved, d.environments[1])), o, {}

    def secrets(d: Desired, o: Observed) -> tuple[Desired, Observed, dict[str, Any]]:
        return d, o, {"secrets": ["manifests"]}  # a secret value that happens to be in the reason

    def step(d: Desired, o: Observed) -> tuple[Desired, Observed, dict[str, Any]]:
        return d, o, {"plan": Plan((Step("e0", "tb0", "a", Action.RESTART, "a is exited"),))}

    return {
        "listed state": listing("exited", "img/a:1"), "listed image": listing("running", "img/a:2"),
        "recorded status": row(status="error"), "recorded image": row(image="img/a:0"), "address": address,
        "declared servers": servers, "manifest file": lines, "secrets": secrets, "a step": step,
    }  # fmt: skip


@pytest.mark.parametrize("name", sorted(_entry_changes()))
def test_a_change_in_any_input_of_an_entry_builds_it_again(name: str) -> None:
    desired, obs = _in_sync_world()
    first = update(FleetStatus(), _report(obs), desired=desired, backoff={}, now=NOW)
    changed_desired, changed_obs, extra = _entry_changes()[name](desired, obs)
    plan = extra.pop("plan", None)
    report = _report(changed_obs, plan)
    got = update(first, report, desired=changed_desired, backoff={}, now=LATER, **extra)
    want = update(replace(first, made={}), report, desired=changed_desired, backoff={}, now=LATER, **extra)
    assert got == want and got.environments == want.environments
    before, after = first.by_name()["tb0"], got.by_name()["tb0"]
    assert replace(after, last_cycle=NOW, last_success=NOW) != before, "the change should show"
    assert got.by_name()["tb1"].servers is first.by_name()["tb1"].servers or name == "secrets"
