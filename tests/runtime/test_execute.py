"""The executor on real parts (a SQLite file, the simulator over HTTP, the real DTMA client): order within a
toolbox, precondition re-checks, retries, timeouts, 409 recovery, and secrets going to the DTMA only."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from reconciler.adapters.dtma_client import DtmaClient, RetryPolicy
from reconciler.adapters.journal import Journal
from reconciler.adapters.sqlite_store import SqliteStore
from reconciler.core.observed import RecordedInstance
from reconciler.core.plan import Action, Step
from reconciler.errors import StoreError
from reconciler.model.secrets import Secret
from reconciler.model.spec import SecretRef, ServerSpec
from reconciler.ports import DeployRequest, DeployResult, DtmaTarget, NewInstance
from reconciler.runtime.execute import ApplyResult, Executor, ExecutorConfig
from tests.sim_helpers import RunningSimulator, running_simulator

CANARY = "canary-9f8e7d"


class StepClock:
    """Time moves only when the executor sleeps, so timeouts and backoff are exact and instant."""

    def __init__(self) -> None:
        self.t = 0.0
        self.sleeps: list[float] = []

    def now(self) -> datetime:
        return datetime(2026, 1, 1, tzinfo=UTC)

    def monotonic(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds


@dataclass
class World:
    sim: RunningSimulator
    store: SqliteStore
    journal: Journal
    dtma: DtmaClient
    targets: dict[str, DtmaTarget]
    clock: StepClock = field(default_factory=StepClock)

    def env(self, index: int) -> str:
        return list(self.targets)[index]

    def executor(self, dtma: DtmaClient | None = None, secrets: dict[str, str] | None = None,
                 sleep: Callable[[float], None] | None = None, **cfg: float) -> Executor:  # fmt: skip
        return Executor(
            store=self.store, dtma=dtma or self.dtma, targets=self.targets, journal=self.journal,
            run_id=self.journal.start_run("apply", self.clock.now()), clock=self.clock,
            sleep=sleep or self.clock.sleep,
            secret_values={"API_KEY_VAR": CANARY} if secrets is None else secrets,
            secret_fingerprints={"API_KEY_VAR": "fp"}, config=ExecutorConfig(**cfg),  # type: ignore[arg-type]
        )  # fmt: skip

    def rows(self) -> dict[str, RecordedInstance]:
        return {str(i.name): i for i in self.store.observe().instances}

    def deploy_directly(self, index: int, name: str, instance_id: str, host_port: int | None = None) -> None:
        """A container the agent already runs (an earlier run or someone else), made over the real API."""
        request = DeployRequest("ghcr.io/x/other:1", name, instance_id, port=8080, host_port=host_port)
        self.dtma.deploy(self.targets[self.env(index)], request)

    def row_for(self, index: int, name: str) -> str:
        catalog = self.store.ensure_catalog(f"ghcr.io/x/{name}:1")
        config = {"managed_by": "mcp-reconciler"}
        return self.store.create_instance(NewInstance(self.env(index), catalog, name, config, "sse", None, ()))


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with running_simulator(toolboxes=2) as sim:
        store = SqliteStore(tmp_path / "state.db", create=True)
        targets = {}
        for i, address in enumerate(sim.addresses):
            row = store.add_environment(f"tb{i}", address.rsplit(":", 1)[0])
            targets[row.id] = DtmaTarget(row.id, f"http://{address}", Secret(sim.token))
        dtma = DtmaClient(retry=RetryPolicy(attempts=1))
        journal = Journal(tmp_path / "journal.db", secrets=[CANARY])
        try:
            yield World(sim, store, journal, dtma, targets)
        finally:
            dtma.close()
            journal.close()
            store.close()


def spec(name: str, state: str = "running", host_port: int | None = None) -> ServerSpec:
    return ServerSpec(
        name=name, image=f"ghcr.io/x/{name}:1", transport="sse", port=8080, host_port=host_port,
        state=state, env=(("LOG", "info"), ("API_KEY", SecretRef("API_KEY_VAR"))),  # type: ignore[arg-type]
    )  # fmt: skip


def step(env: str, action: Action, name: str, *, instance_id: str | None = None, **kw: object) -> Step:
    desired = spec(name, **kw) if action in (Action.CREATE, Action.REPLACE) else None  # type: ignore[arg-type]
    return Step(env, env, name, action, "because", desired=desired, instance_id=instance_id,
                spec_hash="h1" if desired else None)  # fmt: skip


def outcomes(result: ApplyResult) -> list[str]:
    return [r.outcome for r in result.results]


def test_create_inserts_row_deploys_and_records_running_without_storing_secrets(world: World) -> None:
    result = world.executor().apply([step(world.env(0), Action.CREATE, "alpha")])
    assert result.converged and result.applied_any
    row = world.rows()["alpha"]
    assert (row.status, row.managed, row.spec_hash) == ("running", True, "h1")
    assert CANARY not in repr(row.config)
    assert f"API_KEY={CANARY}" in world.sim.sim.env_of(0, "alpha")
    assert [s.outcome for s in world.journal.steps()] == ["ok"]


def test_steps_run_in_order_per_toolbox_and_a_failure_does_not_stop_others(world: World) -> None:
    e0, e1 = world.env(0), world.env(1)
    world.deploy_directly(1, "squatter", "someone-else", host_port=31001)  # takes the host port
    steps = [step(e0, Action.CREATE, "alpha"), step(e0, Action.STOP, "alpha"),
             step(e1, Action.CREATE, "beta", host_port=31001), step(e0, Action.DELETE, "alpha")]  # fmt: skip
    result = world.executor().apply(steps)
    assert outcomes(result) == ["ok", "ok", "failed", "ok"]
    assert "409" in result.results[2].message or "taken" in result.results[2].message
    assert not result.converged
    assert world.rows()["beta"].status == "error"
    journalled = [(s.server, s.action) for s in world.journal.steps() if s.environment == e0]
    assert journalled == [("alpha", "create"), ("alpha", "stop"), ("alpha", "delete")]
    counters = world.sim.counters(0)
    assert (counters["POST /tools"], counters["POST /tools/{name}/stop"], counters["DELETE /tools/{name}"]) == (
        1, 1, 1)  # fmt: skip
    assert "alpha" not in {c["name"] for c in world.sim.admin(0, "GET", "/__sim/state")["containers"]}


class LostResponseClient(DtmaClient):
    """The agent deploys, but the answer is lost and the caller tries again: the second POST gets the
    agent's real 409 for a name it already manages."""

    def deploy(self, target: DtmaTarget, request: DeployRequest) -> DeployResult:
        super().deploy(target, request)
        return super().deploy(target, request)


def test_409_on_create_with_our_instance_id_counts_as_done(world: World) -> None:
    instance_id = world.row_for(0, "alpha")
    racy = LostResponseClient(retry=RetryPolicy(attempts=1))
    try:
        result = world.executor(dtma=racy).apply([step(world.env(0), Action.CREATE, "alpha",
                                                       instance_id=instance_id)])  # fmt: skip
    finally:
        racy.close()
    assert result.converged, result.results
    assert world.rows()["alpha"].status == "running"
    assert world.sim.counters(0)["POST /tools"] == 2


def test_retryable_failure_is_retried_with_backoff(world: World) -> None:
    world.sim.sim.set_faults(0, error_rate={"POST /tools": 1.0})

    def heal_then_sleep(seconds: float) -> None:
        world.sim.sim.clear_faults(0)  # the agent recovers while the executor backs off
        world.clock.sleep(seconds)

    result = world.executor(sleep=heal_then_sleep, backoff_base=0.5).apply(
        [step(world.env(0), Action.CREATE, "alpha")]
    )
    assert result.converged, result.results
    assert world.sim.counters(0)["POST /tools"] == 2
    assert world.clock.sleeps[0] == 0.5


def test_container_that_never_runs_times_out_and_marks_error(tmp_path: Path) -> None:
    with running_simulator(toolboxes=1, start_delay=3600) as sim:
        store = SqliteStore(tmp_path / "state.db", create=True)
        row = store.add_environment("tb0", sim.addresses[0].rsplit(":", 1)[0])
        target = DtmaTarget(row.id, f"http://{sim.addresses[0]}", Secret(sim.token))
        dtma = DtmaClient(retry=RetryPolicy(attempts=1))
        w = World(sim, store, Journal(tmp_path / "journal.db"), dtma, {row.id: target})
        try:
            result = w.executor(ready_timeout=2.0, poll_interval=0.5).apply([step(row.id, Action.CREATE, "alpha")])
        finally:
            dtma.close()
        assert outcomes(result) == ["failed"]
        assert "not running after 2s (state created)" in result.results[0].message
        assert 2.0 <= w.clock.t < 3.0
        assert w.rows()["alpha"].status == "error"
        store.close()


def test_precondition_recheck_skips_a_restart_already_done(world: World) -> None:
    instance_id = world.row_for(0, "alpha")
    world.deploy_directly(0, "alpha", instance_id)  # running again by the time the step runs
    result = world.executor().apply([step(world.env(0), Action.RESTART, "alpha", instance_id=instance_id)])
    assert outcomes(result) == ["skipped"]
    counters = world.sim.counters(0)
    assert "POST /tools/{name}/stop" not in counters and "POST /tools/{name}/start" not in counters


def test_missing_secret_fails_the_step_naming_the_variable(world: World) -> None:
    result = world.executor(secrets={}).apply([step(world.env(0), Action.CREATE, "alpha")])
    assert outcomes(result) == ["failed"]
    assert "API_KEY_VAR" in result.results[0].message
    assert "POST /tools" not in world.sim.counters(0)


class SyncCountingStore(SqliteStore):
    """The real SQLite store, counting ``sync`` calls; ``fail`` makes them fail as an unreachable database."""

    syncs = 0
    fail = False

    def sync(self) -> None:
        type(self).syncs += 1
        if self.fail:
            raise StoreError("SQLite: syncing the database: disk I/O error", retryable=True)
        super().sync()


def test_an_apply_syncs_the_store_once_at_its_end_and_only_after_unsynced_statuses(
    world: World, tmp_path: Path
) -> None:
    world.store.close()
    world.store = SyncCountingStore(tmp_path / "state.db")
    SyncCountingStore.syncs = 0
    e0, e1 = world.env(0), world.env(1)
    result = world.executor().apply([step(e0, Action.CREATE, "alpha"), step(e1, Action.CREATE, "beta")])
    assert result.converged and SyncCountingStore.syncs == 1
    assert {r.status for r in SqliteStore(tmp_path / "state.db").observe().instances} == {"running"}
    # A run that writes no status after a call (a protect change: a database write of its own) syncs nothing.
    instance_id = world.rows()["alpha"].id
    protect = Step(e0, e0, "alpha", Action.SYNC_CONFIG, "protect", desired=spec("alpha"), instance_id=instance_id)
    assert world.executor().apply([protect]).converged and SyncCountingStore.syncs == 1


def test_a_sync_that_fails_leaves_the_applys_results_as_they_are(
    world: World, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    world.store.close()
    world.store = SyncCountingStore(tmp_path / "state.db")
    SyncCountingStore.fail = True
    try:
        result = world.executor().apply([step(world.env(0), Action.CREATE, "alpha")])
    finally:
        SyncCountingStore.fail = False
    assert result.converged and outcomes(result) == ["ok"]
    assert world.rows()["alpha"].status == "running"  # committed all the same: only its sync failed
    assert "could not sync the statuses written by this run" in caplog.text
