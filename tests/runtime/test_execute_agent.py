"""The executor against what real DTMA agents do (issue-tracked behaviours): one retry layer, restart of a
stopped container, 304 on stop, the desired state kept with the row, deploys whose answer times out, rows
dropped only on the agent's word, blocked names, a toolbox failing mid-apply, and agent text redacted."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from reconciler.adapters.dtma_client import DtmaClient, RetryPolicy
from reconciler.adapters.journal import Journal
from reconciler.adapters.sqlite_store import SqliteStore
from reconciler.core.outcomes import StepOutcome
from reconciler.core.plan import BLOCKED_KEY, Action, NoticeKind
from reconciler.errors import (
    DtmaAlreadyStoppedError,
    DtmaNameHeldError,
    DtmaNameTakenError,
    DtmaServerError,
)
from reconciler.model.secrets import Secret
from reconciler.ports import DeployRequest, DeployResult, DtmaTarget
from tests.runtime.test_execute import CANARY, World, outcomes, spec, step
from tests.sim_helpers import running_simulator


async def _no_wait(_seconds: float) -> None:
    return None


@contextmanager
def _world(tmp_path: Path, attempts: int) -> Iterator[World]:
    with running_simulator(toolboxes=2) as sim:
        store = SqliteStore(tmp_path / "state.db", create=True)
        targets = {}
        for i, address in enumerate(sim.addresses):
            row = store.add_environment(f"tb{i}", address.rsplit(":", 1)[0])
            targets[row.id] = DtmaTarget(row.id, f"http://{address}", Secret(sim.token))
        dtma = DtmaClient(retry=RetryPolicy(attempts=attempts, base_delay=0.0), sleep=_no_wait)
        journal = Journal(tmp_path / "journal.db", secrets=[CANARY])
        try:
            yield World(sim, store, journal, dtma, targets)
        finally:
            dtma.close()
            journal.close()
            store.close()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with _world(tmp_path, 1) as w:
        yield w


@pytest.fixture
def world3(tmp_path: Path) -> Iterator[World]:
    """The client retries idempotent calls three times (its default count), with no wait."""
    with _world(tmp_path, 3) as w:
        yield w


def created(w: World, name: str, index: int = 0, **kw: object) -> str:
    result = w.executor().apply([step(w.env(index), Action.CREATE, name, **kw)])
    assert outcomes(result) == ["ok"], result.results
    return w.rows()[name].id


def test_a_stop_against_an_agent_answering_500_makes_at_most_3_calls(world3: World) -> None:
    iid = created(world3, "alpha")
    world3.sim.sim.set_faults(0, error_rate={"POST /tools/{name}/stop": 1.0})
    result = world3.executor().apply([step(world3.env(0), Action.STOP, "alpha", instance_id=iid)])
    assert outcomes(result) == ["failed"]
    assert world3.sim.counters(0)["POST /tools/{name}/stop"] == 3  # the client's three tries, no more
    assert world3.rows()["alpha"].status == "error"


def test_restart_of_an_exited_container_sends_start_only(world: World) -> None:
    iid = created(world, "alpha")
    world.sim.admin(0, "POST", "/__sim/exit-after", {"name": "alpha", "seconds": 0})
    result = world.executor().apply([step(world.env(0), Action.RESTART, "alpha", instance_id=iid)])
    assert outcomes(result) == ["ok"]
    counters = world.sim.counters(0)
    assert "POST /tools/{name}/stop" not in counters
    assert counters["POST /tools/{name}/start"] == 1
    assert world.rows()["alpha"].status == "running"


class StopsLate(DtmaClient):
    """The container exits between the listing and the stop: the agent answers Docker's 304."""

    def stop(self, target: DtmaTarget, name: str) -> None:
        super().stop(target, name)
        raise DtmaAlreadyStoppedError("POST /tools/x/stop: 500: (HTTP code 304) container already stopped")


def test_a_stop_answered_already_stopped_is_a_success_and_records_the_desired_state(world: World) -> None:
    iid = created(world, "alpha")
    late = StopsLate(retry=RetryPolicy(attempts=1))
    try:
        stop = step(world.env(0), Action.STOP, "alpha", instance_id=iid)
        stop = stop.__class__(**{**stop.__dict__, "desired": spec("alpha", state="stopped"), "spec_hash": "h1"})
        result = world.executor(dtma=late).apply([stop])
    finally:
        late.close()
    assert outcomes(result) == ["ok"], result.results
    row = world.rows()["alpha"]
    assert row.status == "stopped"
    assert row.config["desired_state"] == "stopped"  # so the planner later plans a start, not a restart
    assert world.sim.counters(0)["POST /tools/{name}/stop"] == 1


def test_a_deploy_whose_answer_times_out_is_never_sent_twice(tmp_path: Path) -> None:
    with running_simulator(toolboxes=1) as sim:
        store = SqliteStore(tmp_path / "state.db", create=True)
        env = store.add_environment("tb0", sim.addresses[0].rsplit(":", 1)[0])
        target = DtmaTarget(env.id, f"http://{sim.addresses[0]}", Secret(sim.token))
        sim.sim.set_faults(0, hang=True, hang_routes=["POST /tools"], hang_max=30)
        dtma = DtmaClient(read_timeout=0.3, deploy_timeout=0.3, retry=RetryPolicy(attempts=1))
        w = World(sim, store, Journal(tmp_path / "journal.db"), dtma, {env.id: target})
        released = threading.Event()

        def pull_finishes(seconds: float) -> None:  # the pull ends while the executor watches the listing
            if not released.is_set():
                released.set()
                sim.sim.toolbox(0).unhang.set()
                _until(lambda: sim.sim.answers(0).get("POST /tools 201", 0) == 1)
            w.clock.sleep(seconds)

        try:
            result = w.executor(sleep=pull_finishes).apply([step(env.id, Action.CREATE, "alpha")])
        finally:
            dtma.close()
        assert outcomes(result) == ["ok"], result.results
        assert sim.counters(0)["POST /tools"] == 1
        assert w.rows()["alpha"].status == "running"
        store.close()


def test_a_deploy_not_listed_before_the_deadline_is_pending_then_ok(tmp_path: Path) -> None:
    with running_simulator(toolboxes=1) as sim:
        store = SqliteStore(tmp_path / "state.db", create=True)
        env = store.add_environment("tb0", sim.addresses[0].rsplit(":", 1)[0])
        target = DtmaTarget(env.id, f"http://{sim.addresses[0]}", Secret(sim.token))
        sim.sim.set_faults(0, hang=True, hang_routes=["POST /tools"], hang_max=30)
        dtma = DtmaClient(read_timeout=0.3, deploy_timeout=0.3, retry=RetryPolicy(attempts=1))
        journal = Journal(tmp_path / "journal.db")
        w = World(sim, store, journal, dtma, {env.id: target})
        try:
            result = w.executor(pending_timeout=5.0, poll_interval=1.0).apply(
                [step(env.id, Action.CREATE, "alpha")]
            )
            assert outcomes(result) == ["pending"]
            assert result.results[0].notice is NoticeKind.PENDING and not result.converged
            assert [s.outcome for s in journal.steps()] == ["pending"]
            row = w.rows()["alpha"]
            assert row.status == "deploying" and row.config[BLOCKED_KEY]["reason"] == "deploy-pending"
            # the pull ends after the run; the next run finds the container and finishes the step
            sim.sim.toolbox(0).unhang.set()
            _until(lambda: sim.sim.answers(0).get("POST /tools 201", 0) == 1)
            again = w.executor().apply([step(env.id, Action.CREATE, "alpha", instance_id=row.id)])
        finally:
            dtma.close()
        assert outcomes(again) == ["skipped"] and again.converged
        assert sim.counters(0)["POST /tools"] == 1
        assert w.rows()["alpha"].status == "running"
        store.close()


def test_delete_of_an_unlisted_container_keeps_the_row_unless_the_agent_confirms(world: World) -> None:
    iid = created(world, "alpha")
    world.sim.sim.toolbox(0).forget()  # the agent restarted: it lists nothing, the container still runs
    result = world.executor().apply([step(world.env(0), Action.DELETE, "alpha", instance_id=iid)])
    assert outcomes(result) == ["failed"]
    assert result.results[0].notice is NoticeKind.FORGOTTEN
    assert "docker rm -f alpha" in result.results[0].message
    assert "alpha" in world.rows()  # never dropped on a listing's word alone
    assert world.sim.counters(0)["DELETE /tools/{name}"] == 1


def test_delete_of_a_row_whose_create_failed_drops_it_after_the_agents_404(world: World) -> None:
    iid = world.row_for(0, "ghost")  # a row whose container was never made
    world.store.update_instance(iid, status="error", error_message="pull failed")
    delete = step(world.env(0), Action.DELETE, "ghost", instance_id=iid)
    delete = delete.__class__(**{**delete.__dict__, "status_from": "error"})
    result = world.executor().apply([delete])
    assert outcomes(result) == ["ok"]
    assert "ghost" not in world.rows()
    assert world.sim.counters(0)["DELETE /tools/{name}"] == 1


class HeldName(DtmaClient):
    """The agent remembers a name whose container was removed behind its back (409 "already exists")."""

    def deploy(self, target: DtmaTarget, request: DeployRequest) -> DeployResult:
        self.health(target)  # a call the counters see, nothing created
        raise DtmaNameHeldError(f"POST /tools: 409: Instance with name '{request.name}' already exists.",
                                status_code=409)  # fmt: skip


class NameTaken(DtmaClient):
    """Docker has the name, the agent does not manage it (it restarted and forgot)."""

    def deploy(self, target: DtmaTarget, request: DeployRequest) -> DeployResult:
        self.calls = getattr(self, "calls", 0) + 1
        raise DtmaNameTakenError(
            f"POST /tools: 500: (HTTP code 409) unexpected - Conflict. The container name \"/{request.name}\" is "
            "already in use", status_code=500)  # fmt: skip


def test_a_name_held_by_the_agent_blocks_the_create_with_the_fix(world: World) -> None:
    held = HeldName(retry=RetryPolicy(attempts=1))
    try:
        result = world.executor(dtma=held).apply([step(world.env(0), Action.CREATE, "alpha")])
    finally:
        held.close()
    [r] = result.results
    assert r.outcome == StepOutcome.FAILED and r.notice is NoticeKind.NAME_HELD
    assert "restart the DTMA agent on " + world.env(0) + " to release the name" in r.message
    row = world.rows()["alpha"]
    assert row.config[BLOCKED_KEY]["reason"] == "name-held"
    assert row.status == "error"


def test_name_taken_holds_back_the_other_creates_on_that_toolbox_only(world: World) -> None:
    taken = NameTaken(retry=RetryPolicy(attempts=1))
    e0, e1 = world.env(0), world.env(1)
    try:
        result = world.executor(dtma=taken).apply(
            [step(e0, Action.CREATE, "a1"), step(e0, Action.CREATE, "a2"), step(e0, Action.CREATE, "a3")]
        )
        assert taken.calls == 1  # one POST meets the conflict; the rest are not sent
    finally:
        taken.close()
    assert [(r.outcome, r.notice) for r in result.results] == [
        ("failed", NoticeKind.FORGOTTEN),
        ("skipped", NoticeKind.FORGOTTEN),
        ("skipped", NoticeKind.FORGOTTEN),
    ]
    assert not result.converged
    assert world.rows()["a1"].config[BLOCKED_KEY]["reason"] == "name-taken"
    other = world.executor().apply([step(e1, Action.CREATE, "b1")])
    assert outcomes(other) == ["ok"]


def test_a_transport_failure_skips_the_rest_of_that_toolbox_only(world: World) -> None:
    e0, e1 = world.env(0), world.env(1)
    dead = dict(world.targets)
    dead[e0] = DtmaTarget(e0, "http://127.0.0.1:9", Secret(world.sim.token))  # nothing listens there
    ex = world.executor()
    ex.targets = dead
    result = ex.apply([step(e0, Action.CREATE, "a1"), step(e0, Action.CREATE, "a2"), step(e0, Action.STOP, "a3"),
                       step(e1, Action.CREATE, "b1")])  # fmt: skip
    assert outcomes(result) == ["failed", "skipped", "skipped", "ok"]
    assert result.results[1].message == result.results[2].message
    assert "failed mid-apply" in result.results[1].message
    assert [s.server for s in world.journal.steps() if s.environment == e0] == ["a1"]


class Echoes(DtmaClient):
    """An agent whose 500 answer echoes the request body, secret env values included."""

    def deploy(self, target: DtmaTarget, request: DeployRequest) -> DeployResult:
        body = ", ".join(f"{k}={v.reveal() if isinstance(v, Secret) else v}" for k, v in request.env)
        raise DtmaServerError(f"POST /tools: 500: bad request body {{Env: [{body}]}} " + "x" * 5000,
                              status_code=500)  # fmt: skip


def test_agent_text_is_redacted_and_bounded_everywhere_it_goes(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    echo = Echoes(retry=RetryPolicy(attempts=1))
    try:
        result = world.executor(dtma=echo, retries=1).apply([step(world.env(0), Action.CREATE, "alpha")])
    finally:
        echo.close()
    [r] = result.results
    assert r.outcome == "failed" and "[redacted]" in r.message and CANARY not in r.message
    assert len(r.message) <= 500
    row = world.rows()["alpha"]
    assert row.error_message is not None and CANARY not in row.error_message and len(row.error_message) <= 500
    assert all(CANARY not in (s.error or "") for s in world.journal.steps())
    assert CANARY not in caplog.text


def _until(done: object, timeout: float = 10.0) -> None:
    """Wait for a condition the simulator's own threads bring about (bounded)."""
    deadline = time.monotonic() + timeout
    while not done():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)
