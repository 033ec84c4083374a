"""Hypothesis properties of the planner over an in-memory world (tests/core/world.py)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

import jsonschema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.core.observed import INSTALLATION_STATUSES, LiveContainer, LiveListing, RecordedEnvironment
from reconciler.core.plan import Policy
from reconciler.core.planner import plan
from reconciler.model.spec import Desired, EnvironmentPolicy, EnvironmentSpec, SecretRef, ServerSpec, SourceRef
from reconciler.model.spec_hash import spec_hash
from reconciler.model.stored import stored_config
from reconciler.presentation.plan_json import plan_from_dict, plan_to_dict
from reconciler.resources import schema_path
from tests.core.world import World, instance_from_config, matching_world

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
SCHEMA = json.loads(schema_path("plan.v1.schema.json").read_text())
FPS = {"TOKEN_A": "hmac-sha256:aaaa", "TOKEN_B": "hmac-sha256:bbbb"}
NAMES = [f"srv{i}" for i in range(8)]
STATES = ["created", "running", "paused", "restarting", "removing", "exited", "dead", "not_found", "unknown"]
STATUSES = ["running", "stopped", "error", "pending_deploy", "exited", "deploying"]

env_values = st.one_of(
    st.sampled_from(["info", "debug", "x=y"]), st.sampled_from(["TOKEN_A", "TOKEN_B"]).map(SecretRef)
)


@st.composite
def server_specs(draw: st.DrawFn, name: str, line: int) -> ServerSpec:
    keys = draw(st.lists(st.sampled_from(["LOG_LEVEL", "API_KEY", "MODE"]), unique=True, max_size=2))
    return ServerSpec(
        name=name,
        image=f"ghcr.io/example/{name}:{draw(st.sampled_from(['1', '2']))}",
        transport=draw(st.sampled_from(["stdio", "sse", "streamable-http", "websocket"])),
        endpoint=draw(st.sampled_from([None, "/mcp"])),
        port=draw(st.sampled_from([None, 8080])),
        capabilities=tuple(draw(st.lists(st.sampled_from(["tools", "resources"]), unique=True))),
        state=draw(st.sampled_from(["running", "stopped"])),
        env=tuple((k, draw(env_values)) for k in keys),
        protect=draw(st.booleans()),
        source=SourceRef("desired.yaml", line),
    )


@st.composite
def desired_servers(draw: st.DrawFn) -> tuple[ServerSpec, ...]:
    names = draw(st.lists(st.sampled_from(NAMES), unique=True, max_size=6))
    return tuple(draw(server_specs(n, 10 * i + 6)) for i, n in enumerate(sorted(names)))


@st.composite
def worlds(draw: st.DrawFn) -> tuple[Desired, World, Policy]:
    """A toolbox in an arbitrary mix of states: rows, containers, drift, leftovers, strangers."""
    env_id, env_name = "env-1", "research-toolbox"
    servers = draw(desired_servers())
    world = World([RecordedEnvironment(env_id, env_name, "10.0.0.1", "active")], fingerprints=FPS)
    containers: dict[str, LiveContainer] = {}
    pool = [*NAMES, "dtma_manager"]
    for i, name in enumerate(pool):
        has_row = draw(st.booleans()) and name != "dtma_manager"
        row_id = f"row-{i}"
        if has_row:
            deployed = draw(server_specs(name, 0))
            fps = draw(st.sampled_from([FPS, {"TOKEN_A": "hmac-sha256:old"}]))
            config = stored_config(deployed, spec_hash(deployed, fps), fps)
            if not draw(st.integers(0, 9)):
                config = {"Env": []}  # an unmanaged row
            world.instances[row_id] = instance_from_config(
                row_id, env_id, name, draw(st.sampled_from(STATUSES)), config
            )
        if draw(st.booleans()):
            owner = row_id if has_row and draw(st.integers(0, 5)) else None
            image = draw(st.sampled_from([None, f"ghcr.io/example/{name}:1", f"ghcr.io/example/{name}:2"]))
            containers[name] = LiveContainer(name, draw(st.sampled_from(STATES)), image=image, instance_id=owner)
    world.live[env_id] = LiveListing(env_id, tuple(containers[k] for k in sorted(containers)), "a")
    env_policy = EnvironmentPolicy(prune=draw(st.booleans()), allow_empty=draw(st.booleans()))
    desired = Desired((EnvironmentSpec(env_name, servers, env_policy, SourceRef("desired.yaml", 2)),), "sha256:d")
    policy = Policy(
        one_instance_per_image=draw(st.booleans()),
        allow_mass_delete=draw(st.sampled_from([None, "test"])),
        mass_delete_max_total=draw(st.sampled_from([2, 10])),
    )
    return desired, world, policy


@given(desired_servers())
def test_plan_of_a_matching_world_is_empty(servers: tuple[ServerSpec, ...]) -> None:
    world = matching_world("env-1", "research-toolbox", servers, FPS)
    desired = Desired((EnvironmentSpec("research-toolbox", servers),))
    result = plan(desired, world.observed(), Policy(one_instance_per_image=False), NOW, FPS)
    assert result.steps == ()
    assert result.notices == ()


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=300)
@given(worlds())
def test_applying_a_plan_converges(case: tuple[Desired, World, Policy]) -> None:
    desired, world, policy = case
    policy = replace(policy, allow_mass_delete="property test")
    first = plan(desired, world.observed(), policy, NOW, FPS)
    for step in first.steps:
        world.apply_step(step)
    second = plan(desired, world.observed(), policy, NOW, FPS)
    assert second.steps == (), [(s.server, s.action, s.reason) for s in second.steps]


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=300)
@given(worlds())
def test_with_the_mass_delete_guard_only_refused_steps_remain(case: tuple[Desired, World, Policy]) -> None:
    """The guard's limits depend on how many managed servers exist, so a step it refused may come back
    after the creates of the first plan; nothing else may."""
    desired, world, policy = case
    policy = replace(policy, allow_mass_delete=None)
    allowed = plan(desired, world.observed(), replace(policy, allow_mass_delete="x"), NOW, FPS)
    first = plan(desired, world.observed(), policy, NOW, FPS)
    refused = {(s.server, s.action) for s in allowed.steps} - {(s.server, s.action) for s in first.steps}
    for step in first.steps:
        world.apply_step(step)
    second = plan(desired, world.observed(), policy, NOW, FPS)
    assert {(s.server, s.action) for s in second.steps} <= refused


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=150)
@given(worlds())
def test_planning_is_deterministic_and_independent_of_input_order(case: tuple[Desired, World, Policy]) -> None:
    desired, world, policy = case
    observed = world.observed()
    shuffled = replace(
        observed,
        recorded=replace(observed.recorded, instances=tuple(reversed(observed.recorded.instances))),
    )
    desired_rev = replace(
        desired, environments=tuple(replace(e, servers=tuple(reversed(e.servers))) for e in desired.environments)
    )
    a = plan(desired, observed, policy, NOW, FPS)
    assert a == plan(desired, observed, policy, NOW, FPS)
    assert a == plan(desired_rev, shuffled, policy, NOW, FPS)


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=150)
@given(worlds())
def test_json_validates_round_trips_and_writes_only_enum_statuses(case: tuple[Desired, World, Policy]) -> None:
    desired, world, policy = case
    result = plan(desired, world.observed(), policy, NOW, FPS)
    data = plan_to_dict(result, basis={"manifest_digest": "sha256:d", "database": {}, "listings": {}})
    jsonschema.validate(data, SCHEMA)
    assert plan_from_dict(json.loads(json.dumps(data))) == result
    for step in result.steps:
        assert step.status_to is None or step.status_to in INSTALLATION_STATUSES
        assert step.reason
