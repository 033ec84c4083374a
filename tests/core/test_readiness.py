"""Readiness in the core: the defaults per transport, the probe targets, the consecutive-failure count, offer
drift, the unready outcome, and a restart on unhealthy that the flap guard stalls after two restarts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from reconciler.core import flap
from reconciler.core.health import ProbeResult, ProbeTarget, ReadinessKind
from reconciler.core.observed import (
    LiveContainer,
    LiveListing,
    Observed,
    RecordedEnvironment,
    RecordedInstance,
    RecordedState,
    ServerHealth,
    Unreachable,
)
from reconciler.core.outcomes import RunOutcome, StepOutcome
from reconciler.core.plan import Action, NoticeKind, Policy
from reconciler.core.planner import plan
from reconciler.core.readiness import assess, offer_drift, probe_targets
from reconciler.core.status_map import status_for
from reconciler.core.verdict import GapKind, Verdict, apply_outcome, verdict_of
from reconciler.model.spec import Desired, EnvironmentSpec, ReadinessSpec, ServerSpec
from reconciler.presentation.exit_codes import apply_exit_code

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
ENV = "11111111-0000-0000-0000-000000000001"


def server(**kw: object) -> ServerSpec:
    base: dict[str, object] = {"name": "web", "image": "ghcr.io/x/web:1", "transport": "streamable-http"}
    return ServerSpec(**{**base, **kw})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("spec", "kind", "path"),
    [
        (server(port=8080, host_port=31001), "mcp", "/mcp"),
        (server(port=8080, host_port=31001, endpoint="/v1/mcp"), "mcp", "/v1/mcp"),
        (server(transport="sse", port=8080, host_port=31001), "mcp", "/sse"),
        (server(transport="websocket", port=8080, host_port=31001), "mcp", "/"),
        (server(port=8080, host_port=31001, host_ip="::"), "mcp", "/mcp"),
        (
            server(port=8080, host_port=31001, host_ip="127.0.0.1"),
            "none",
            "/health",
        ),  # not at the toolbox's address
        (server(port=8080), "none", "/health"),  # no hostPort: nothing to reach
        (server(transport="stdio"), "none", "/health"),  # stdio: the container state only
        (server(port=8080, host_port=31001, readiness=ReadinessSpec(type="http")), "http", "/health"),
        (
            server(port=8080, host_port=31001, readiness=ReadinessSpec(type="http", path="/ready")),
            "http",
            "/ready",
        ),
        (server(port=8080, host_port=31001, readiness=ReadinessSpec(type="none")), "none", "/health"),
    ],
)
def test_readiness_defaults(spec: ServerSpec, kind: str, path: str) -> None:
    assert (spec.readiness_type, spec.readiness_path) == (kind, path)


def observed(live: object, address: str | None = "127.0.0.2") -> Observed:
    envs = (RecordedEnvironment(ENV, "research-toolbox", address, "active"),)
    row = RecordedInstance(
        "aaaaaaaa-0000-0000-0000-000000000001", ENV, "cat", "web", "running", "ghcr.io/x/web:1", True
    )
    return Observed(RecordedState(envs, (row,)), {ENV: live})  # type: ignore[dict-item]


def desired(*servers: ServerSpec) -> Desired:
    return Desired((EnvironmentSpec("research-toolbox", servers),))


def listing(*states: tuple[str, str]) -> LiveListing:
    """Shape (a) lists no ports: the published ports are not what these tests are about."""
    return LiveListing(ENV, tuple(LiveContainer(n, s) for n, s in states), "a")  # type: ignore[arg-type]


def test_only_running_servers_with_a_network_readiness_are_probed() -> None:
    want = desired(
        server(name="web", port=8080, host_port=31001),
        server(name="down", port=8080, host_port=31002),
        server(name="plain", transport="stdio"),
        server(name="stopped", port=8080, host_port=31003, state="stopped"),
        server(name="unpublished", port=8080, readiness=ReadinessSpec(type="http")),  # declared, no hostPort
    )
    live = listing(
        ("web", "running"), ("down", "exited"), ("plain", "running"), ("stopped", "running"),
        ("unpublished", "running"),
    )  # fmt: skip
    targets = [t for t, _ in probe_targets(want, observed(live), timeout=2.0)]
    assert targets == [
        ProbeTarget(ENV, "web", "127.0.0.2", 31001, ReadinessKind.MCP, "/mcp", "streamable-http", 2.0)
    ]
    assert targets[0].url == "http://127.0.0.2:31001/mcp"


def test_an_unlisted_toolbox_or_one_without_an_address_is_not_probed() -> None:
    want = desired(server(port=8080, host_port=31001))
    assert probe_targets(want, observed(Unreachable(ENV, "timeout")), timeout=1) == ()
    assert probe_targets(want, observed(listing(("web", "running")), address=None), timeout=1) == ()


def test_a_fleet_with_nothing_published_has_nothing_to_probe() -> None:
    want = desired(server(name="web", port=8080), server(name="api", transport="sse", port=8080))
    assert probe_targets(want, observed(listing(("web", "running"), ("api", "running"))), timeout=1) == ()


def test_failures_count_in_a_row_reset_on_success_and_other_environments_keep_theirs() -> None:
    target = ProbeTarget(ENV, "web", "127.0.0.2", 31001, ReadinessKind.MCP, "/mcp")
    other = ("22222222-0000-0000-0000-000000000002", "api")
    failed = {target.key: ProbeResult(False, "refused")}
    counts: dict[tuple[str, str], int] = {other: 2}
    for expected in (1, 2, 3):
        health, counts = assess([target], failed, counts, {ENV}, now=NOW, thresholds={}, default_threshold=3)
        assert counts == {target.key: expected, other: 2}
    assert health[target.key].unhealthy and health[target.key].failures == 3
    health, counts = assess(
        [target], {target.key: ProbeResult(True)}, counts, {ENV}, now=NOW, thresholds={target.key: 5},
        default_threshold=3,
    )  # fmt: skip
    assert counts == {other: 2}
    assert health[target.key] == ServerHealth("mcp", ProbeResult(True), NOW, failures=0, threshold=5)


def test_offer_drift_names_what_is_missing() -> None:
    spec = server(port=8080, host_port=31001, capabilities=("tools", "prompts"), tools=("fetch", "search"))
    answer = ProbeResult(True, capabilities=("tools", "logging"), tools=("fetch", "extra"))
    assert offer_drift(spec, answer) == (
        "capabilities declared but not announced: prompts; pinned tools not listed: search"
    )
    assert (
        offer_drift(spec, ProbeResult(True, capabilities=("tools", "prompts"), tools=("fetch", "search"))) is None
    )
    assert offer_drift(spec, ProbeResult(False, "refused")) is None  # a failed probe is health, not drift


def test_a_failed_probe_is_a_gap_of_its_own_kind_not_unobserved() -> None:
    spec = server(port=8080, host_port=31001)
    seen = observed(listing(("web", "running")))
    result = ProbeResult(False, "connection refused")
    seen = Observed(seen.recorded, seen.live, {(ENV, "web"): ServerHealth("mcp", result, NOW, failures=1)})
    the_plan = plan(desired(spec), seen, Policy(), NOW, {})
    verdict = verdict_of(the_plan, seen)
    assert [(g.kind, g.server) for g in verdict.gaps] == [(GapKind.UNHEALTHY, "web")]
    assert "connection refused" in verdict.gaps[0].reason
    assert [n.kind for n in the_plan.notices] == [NoticeKind.PROBE_FAILED]


def test_status_of_a_running_container_follows_its_probe() -> None:
    assert status_for("running", "running", None) == "running"
    assert status_for("running", "running", True) == "running"
    assert status_for("running", "running", False) == "error_runtime"


@pytest.mark.parametrize(
    ("outcomes", "run"),
    [
        ([StepOutcome.UNREADY], RunOutcome.PARTIAL),
        ([StepOutcome.OK, StepOutcome.UNREADY], RunOutcome.PARTIAL),
        ([StepOutcome.FAILED, StepOutcome.UNREADY], RunOutcome.PARTIAL),
        ([StepOutcome.OK], RunOutcome.CONVERGED),
    ],
)
def test_an_unready_step_makes_the_run_partial_and_apply_exit_4(
    outcomes: list[StepOutcome], run: RunOutcome
) -> None:
    got = apply_outcome(Verdict(), outcomes, plan_errors=False, stopped=False)
    assert got is run
    assert apply_exit_code(got) == (0 if run is RunOutcome.CONVERGED else 4)


def test_a_server_still_unhealthy_after_two_restarts_is_stalled() -> None:
    spec = server(port=8080, host_port=31001, on_unhealthy="restart", readiness=ReadinessSpec(failure_threshold=1))
    base = observed(listing(("web", "running")))
    state: dict[flap.Key, flap.FlapRecord] = {}
    restarts = 0
    for cycle in range(1, 5):
        health = {(ENV, "web"): ServerHealth("mcp", ProbeResult(False, "no answer"), NOW, cycle, 1)}
        the_plan = plan(desired(spec), Observed(base.recorded, base.live, health), Policy(), NOW, {})
        the_plan, state = flap.guard(state, the_plan, {ENV}, threshold=2)
        restarts += sum(1 for s in the_plan.steps if s.action is Action.RESTART)
        state = flap.after_apply(state, the_plan.steps)  # applied; the server stays unhealthy (unready)
    assert restarts == 2
    assert flap.stalled(state) == ((ENV, "web"),)
    assert {n.kind for n in the_plan.notices} == {NoticeKind.UNHEALTHY, NoticeKind.STALLED}


def test_health_and_readiness_fields_survive_a_saved_plan() -> None:
    import json
    from pathlib import Path

    import jsonschema

    from reconciler.presentation.plan_json import plan_from_dict, plan_to_dict
    from reconciler.resources import schema_path
    from tests.core.golden_io import load_case

    want, seen, policy, now, fps = load_case(Path(__file__).parent / "golden" / "53-unhealthy-restart")
    the_plan = plan(want, seen, policy, now, fps)
    data = json.loads(json.dumps(plan_to_dict(the_plan, desired=want)))
    jsonschema.validate(data, json.loads(schema_path("plan.v1.schema.json").read_text()))
    assert data["desired"][0]["servers"][0]["readiness"]["failure_threshold"] == 2
    assert data["health"][0]["unhealthy"] is True
    assert plan_from_dict(data) == the_plan
