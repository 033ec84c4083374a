"""The fleet status the page shows, built from cycle reports in memory: verdicts, carrying over, redaction."""

from __future__ import annotations

from datetime import UTC, datetime

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
