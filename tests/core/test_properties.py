"""Hypothesis properties of the planner, and of the planner with the real executor.

The convergence properties build a toolbox in an arbitrary mix of states (rows, containers, drift,
leftovers), put its rows in the in-memory store and its containers in the DTMA simulator (a real HTTP server
on loopback, spoken to by the real client), then observe, plan and apply with the real ``Executor``, observe
again and plan again: nothing may be left to do. No test double stands in for what a step does.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.adapters.dtma_client import DtmaClient, RetryPolicy
from reconciler.adapters.journal import Journal
from reconciler.adapters.memory_store import MemoryDatabase, MemoryStore
from reconciler.core.observed import (
    INSTALLATION_STATUSES,
    LiveContainer,
    LiveListing,
    Observed,
    RecordedEnvironment,
    RecordedState,
)
from reconciler.core.plan import NoticeKind, Plan, Policy
from reconciler.core.planner import plan
from reconciler.core.verdict import verdict_of
from reconciler.model.secrets import Secret
from reconciler.model.spec import Desired, EnvironmentPolicy, EnvironmentSpec, SecretRef, ServerSpec, SourceRef
from reconciler.model.spec_hash import spec_hash
from reconciler.model.stored import stored_config
from reconciler.presentation.plan_json import plan_from_dict, plan_to_dict
from reconciler.resources import schema_path
from reconciler.runtime.execute import ApplyResult, Executor, ExecutorConfig
from reconciler.runtime.observe import observe, targets_for
from reconciler.settings import Settings
from tests.core.golden_io import instance_from_config
from tests.sim_helpers import RunningSimulator, running_simulator

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
SCHEMA = json.loads(schema_path("plan.v1.schema.json").read_text())
SECRET_VALUES = {"TOKEN_A": "secret-value-a", "TOKEN_B": "secret-value-b"}
FPS = {"TOKEN_A": "hmac-sha256:aaaa", "TOKEN_B": "hmac-sha256:bbbb"}
NAMES = [f"srv{i}" for i in range(8)]
ENV_ID = "5b1f0c2e-8d7a-4c1b-9e3f-0a1b2c3d4e5f"
ENV_NAME = "research-toolbox"
# What the simulator's containers can be in; the planner's answers to the other states need no executor.
SIM_STATES = ["running", "exited"]
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


@dataclass(frozen=True)
class Row:
    id: str
    name: str
    image: str
    status: str
    config: Mapping[str, Any]


@dataclass(frozen=True)
class Box:
    """One container on the toolbox: ``owner`` is the row id it carries (None: no instance id)."""

    name: str
    state: str
    image: str
    owner: str | None


@dataclass(frozen=True)
class Case:
    desired: Desired
    rows: tuple[Row, ...]
    boxes: tuple[Box, ...]
    policy: Policy

    def observed(self) -> Observed:
        """The observation the planner gets for this case (for the properties that need no executor)."""
        env = RecordedEnvironment(ENV_ID, ENV_NAME, "127.0.0.1", "active")
        instances = tuple(
            instance_from_config(r.id, ENV_ID, r.name, r.status, r.config, image=r.image) for r in self.rows
        )
        containers = tuple(LiveContainer(b.name, b.state, image=b.image, instance_id=b.owner) for b in self.boxes)  # type: ignore[arg-type]
        return Observed(RecordedState((env,), instances), {ENV_ID: LiveListing(ENV_ID, containers, "a")})


@st.composite
def cases(draw: st.DrawFn, states: list[str] = SIM_STATES) -> Case:
    """A toolbox in an arbitrary mix of states: rows, containers, drift, leftovers, strangers' rows."""
    servers = draw(desired_servers())
    declared = {s.name: s for s in servers}
    rows: list[Row] = []
    boxes: list[Box] = []
    for i, name in enumerate(NAMES):
        row_id = f"00000000-0000-4000-8000-{i:012d}"
        has_row = draw(st.booleans())
        image = f"ghcr.io/example/{name}:1"
        if has_row:
            # Often deployed exactly as declared (then only the state may differ), else anything.
            if name in declared and draw(st.integers(0, 3)):
                deployed = replace(declared[name], state=draw(st.sampled_from(["running", "stopped"])))
            else:
                deployed = draw(server_specs(name, 0))
            image = deployed.image
            fps = draw(st.sampled_from([FPS, FPS, {"TOKEN_A": "hmac-sha256:old"}]))
            config = stored_config(deployed, spec_hash(deployed, fps), fps)
            if not draw(st.integers(0, 9)):
                config = {"Env": []}  # a row someone else made
            rows.append(Row(row_id, name, image, draw(st.sampled_from(STATUSES)), config))
        if draw(st.integers(0, 3)) if has_row else not draw(st.integers(0, 3)):
            owner = row_id if has_row and draw(st.integers(0, 5)) else None
            live_image = draw(st.sampled_from([image, image, f"ghcr.io/example/{name}:2"]))
            boxes.append(Box(name, draw(st.sampled_from(states)), live_image, owner))
    env_policy = EnvironmentPolicy(prune=draw(st.booleans()), allow_empty=draw(st.booleans()))
    desired = Desired((EnvironmentSpec(ENV_NAME, servers, env_policy, SourceRef("desired.yaml", 2)),), "sha256:d")
    policy = Policy(
        one_instance_per_image=draw(st.booleans()),
        allow_mass_delete=draw(st.sampled_from([None, "test"])),
        mass_delete_max_total=draw(st.sampled_from([2, 10])),
    )
    return Case(desired, tuple(rows), tuple(boxes), policy)


# -- the rig: the simulator, the real client and a journal, shared by every example ------------------------


@dataclass
class Rig:
    sim: RunningSimulator
    dtma: DtmaClient
    journal: Journal
    settings: Settings


class FakeClock:
    """The executor's clock; its sleep moves the clock instead of waiting."""

    def __init__(self) -> None:
        self.at = NOW
        self.ticks = 0.0

    def now(self) -> datetime:
        return self.at

    def monotonic(self) -> float:
        return self.ticks

    def sleep(self, seconds: float) -> None:
        self.ticks += seconds
        self.at += timedelta(seconds=seconds)


@pytest.fixture(scope="module", params=["newer", "older"])
def rig(request: pytest.FixtureRequest) -> Iterator[Rig]:
    """Both real agent lineages: the newer lists with instance ids on /tools/status, the older on /status."""
    with running_simulator(toolboxes=1, mode=request.param) as sim, tempfile.TemporaryDirectory() as tmp:
        dtma = DtmaClient(retry=RetryPolicy(attempts=1), connect_timeout=2, read_timeout=5)
        journal = Journal(Path(tmp) / "journal.db", secrets=SECRET_VALUES.values())
        port = int(sim.addresses[0].rsplit(":", 1)[1])
        try:
            yield Rig(sim, dtma, journal, Settings(dtma_token=Secret(sim.token), dtma_port=port))
        finally:
            dtma.close()
            journal.close()


def _materialise(rig: Rig, case: Case) -> MemoryStore:
    """The case's rows in a fresh in-memory store and its containers in the (emptied) simulated toolbox."""
    store = MemoryStore(MemoryDatabase())
    address = rig.sim.addresses[0].rsplit(":", 1)[0]
    store.add_environment(ENV_NAME, address, environment_id=ENV_ID)
    database = store.database
    for r in case.rows:
        catalog = store.ensure_catalog(r.image)
        database.instances[r.id] = {
            "id": r.id, "account_tool_environment_id": ENV_ID, "tool_catalog_id": catalog,
            "instance_name_on_toolbox": r.name, "status_on_toolbox": r.status,
            "base_config_override_json": dict(r.config),
        }  # fmt: skip
    toolbox = rig.sim.sim.toolbox(0)
    with toolbox.lock:
        toolbox.forget()  # the agent's memory of the names it manages goes with the containers
        toolbox.containers.clear()
        toolbox.seed([{"name": b.name, "image": b.image, "instance_id": b.owner} for b in case.boxes])
        for b in case.boxes:
            toolbox.containers[b.name].stopped = b.state == "exited"
    return store


def _plan(rig: Rig, store: MemoryStore, case: Case, policy: Policy) -> Plan:
    observed = observe(store, rig.dtma, rig.settings)
    return plan(case.desired, observed, policy, NOW, FPS)


def _apply(rig: Rig, store: MemoryStore, the_plan: Plan) -> ApplyResult:
    clock = FakeClock()
    observed = observe(store, rig.dtma, rig.settings)
    executor = Executor(
        store=store,
        dtma=rig.dtma,
        targets=targets_for(observed.recorded, rig.settings),
        journal=rig.journal,
        run_id=rig.journal.start_run("apply", NOW),
        clock=clock,
        sleep=clock.sleep,
        secret_values=SECRET_VALUES,
        secret_fingerprints=FPS,
        config=ExecutorConfig(global_concurrency=1, ready_timeout=5.0, poll_interval=0.5, backoff_base=0.1),
    )
    return executor.apply(the_plan.steps)


def _failures(result: ApplyResult) -> list[tuple[str, str, str]]:
    """Failed steps, except those the executor reports as beyond its reach: a row whose container the agent
    neither lists nor manages may still run on the host (an agent that restarted forgets its containers), so
    the row is kept and a notice names the fix."""
    return [
        (r.step.server, str(r.step.action), r.message)
        for r in result.results
        if r.outcome == "failed" and r.notice is not NoticeKind.FORGOTTEN
    ]


def _unreachable_by_design(result: ApplyResult) -> set[tuple[str, str]]:
    return {(r.step.server, str(r.step.action)) for r in result.results if r.notice is NoticeKind.FORGOTTEN}


PROPERTY = settings(
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    max_examples=40,
    deadline=None,
)


@PROPERTY
@given(cases())
def test_applying_a_plan_with_the_real_executor_converges(rig: Rig, case: Case) -> None:
    # The store keeps Agentopia's unique (environment, catalog) pair, so the planner must know it.
    policy = replace(case.policy, allow_mass_delete="property test", one_instance_per_image=True)
    store = _materialise(rig, case)
    first = _plan(rig, store, case, policy)
    applied = _apply(rig, store, first)
    assert not _failures(applied), _failures(applied)
    second = _plan(rig, store, case, policy)
    left = {(s.server, str(s.action)) for s in second.steps} - _unreachable_by_design(applied)
    assert not left, [(s.server, s.action, s.reason) for s in second.steps]


@settings(PROPERTY, max_examples=20)
@given(cases())
def test_with_the_mass_delete_guard_only_refused_steps_remain(rig: Rig, case: Case) -> None:
    """The guard's limits depend on how many managed servers exist, so a step it refused may come back
    after the creates of the first plan; nothing else may."""
    policy = replace(case.policy, allow_mass_delete=None, one_instance_per_image=True)
    store = _materialise(rig, case)
    allowed = _plan(rig, store, case, replace(policy, allow_mass_delete="x"))
    first = _plan(rig, store, case, policy)
    refused = {(s.server, s.action) for s in allowed.steps} - {(s.server, s.action) for s in first.steps}
    applied = _apply(rig, store, first)
    assert not _failures(applied), _failures(applied)
    second = _plan(rig, store, case, policy)
    assert {(s.server, s.action) for s in second.steps} - _unreachable_by_design(applied) <= refused


# -- properties of the planner alone -----------------------------------------------------------------------


def _matching(servers: tuple[ServerSpec, ...]) -> Observed:
    """A toolbox on which every server already runs exactly as declared, its rows in agreement."""
    rows = tuple(
        Row(f"row-{i}", s.name, s.image, "running" if s.state == "running" else "stopped",
            stored_config(s, spec_hash(s, FPS), FPS))
        for i, s in enumerate(servers)
    )  # fmt: skip
    boxes = tuple(
        Box(s.name, "running" if s.state == "running" else "exited", s.image, f"row-{i}")
        for i, s in enumerate(servers)
    )
    return Case(Desired(()), rows, boxes, Policy()).observed()


@settings(deadline=None)  # a loaded CI machine is not a failure
@given(desired_servers())
def test_plan_of_a_matching_world_is_empty(servers: tuple[ServerSpec, ...]) -> None:
    desired = Desired((EnvironmentSpec(ENV_NAME, servers),))
    result = plan(desired, _matching(servers), Policy(one_instance_per_image=False), NOW, FPS)
    assert result.steps == ()
    assert result.notices == ()


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None, max_examples=150)
@given(cases(STATES))
def test_planning_is_deterministic_and_independent_of_input_order(case: Case) -> None:
    observed = case.observed()
    shuffled = replace(
        observed,
        recorded=replace(observed.recorded, instances=tuple(reversed(observed.recorded.instances))),
    )
    desired = case.desired
    desired_rev = replace(
        desired, environments=tuple(replace(e, servers=tuple(reversed(e.servers))) for e in desired.environments)
    )
    a = plan(desired, observed, case.policy, NOW, FPS)
    assert a == plan(desired, observed, case.policy, NOW, FPS)
    assert a == plan(desired_rev, shuffled, case.policy, NOW, FPS)


# jsonschema is slow per example: fewer examples than the other planner properties
@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None, max_examples=80)
@given(cases(STATES))
def test_json_validates_round_trips_and_writes_only_enum_statuses(case: Case) -> None:
    result = plan(case.desired, case.observed(), case.policy, NOW, FPS)
    verdict = verdict_of(result, case.observed())
    data = plan_to_dict(result, basis={"manifest_digest": "sha256:d", "database": {}, "listings": {}},
                        verdict=verdict)  # fmt: skip
    jsonschema.validate(data, SCHEMA)
    assert data["complete"] is verdict.complete and len(data["incomplete"]) == len(verdict.gaps)
    assert plan_from_dict(json.loads(json.dumps(data))) == result
    for step in result.steps:
        assert step.status_to is None or step.status_to in INSTALLATION_STATUSES
        assert step.reason
