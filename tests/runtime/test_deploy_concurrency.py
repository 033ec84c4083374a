"""Creates on one toolbox overlap up to RECONCILER_DTMA_DEPLOY_CONCURRENCY; every other action keeps its order.

The simulator counts the deploys it serves at once; a gathered deploy waits until that many are in progress
together, so the run shows the executor really sent them at once (no timing is asserted).
"""

from __future__ import annotations

import time
from pathlib import Path

from reconciler.adapters.clock import SystemClock
from reconciler.adapters.dtma_client import DtmaClient, RetryPolicy
from reconciler.adapters.journal import Journal
from reconciler.adapters.sqlite_store import SqliteStore
from reconciler.core.plan import Action, Step
from reconciler.model.secrets import Secret
from reconciler.model.spec import ServerSpec
from reconciler.ports import DtmaTarget
from reconciler.runtime.execute import Executor, ExecutorConfig, deploy_groups
from reconciler.settings import from_environ
from tests.sim_helpers import running_simulator


def _spec(name: str, host_port: int | None = None) -> ServerSpec:
    return ServerSpec(name=name, image=f"ghcr.io/u/{name}:1", transport="sse", port=8080, host_port=host_port)


def _create(name: str, env: str = "e1", host_port: int | None = None) -> Step:
    return Step(env, env, name, Action.CREATE, "absent", desired=_spec(name, host_port), spec_hash="h")


def _shape(groups: list[list[Step]]) -> list[list[str]]:
    return [[f"{s.action}:{s.server}" for s in g] for g in groups]


def test_consecutive_creates_form_groups_and_other_actions_stand_alone() -> None:
    stop = Step("e1", "e1", "old", Action.STOP, "declared stopped", instance_id="i1")
    chain = [_create("a"), _create("b"), stop, _create("c"), _create("d"), _create("e")]
    assert _shape(deploy_groups(chain, 3)) == [
        ["create:a", "create:b"],
        ["stop:old"],
        ["create:c", "create:d", "create:e"],
    ]
    assert _shape(deploy_groups(chain, 1)) == [[f"{s.action}:{s.server}"] for s in chain]


def test_creates_sharing_a_host_port_or_a_name_never_overlap() -> None:
    # The agent checks ports and names against its registry before the pull and registers after it: two such
    # deploys at once would both pass its check.
    chain = [_create("a", host_port=31001), _create("b", host_port=31001), _create("b"), _create("c")]
    assert _shape(deploy_groups(chain, 4)) == [["create:a"], ["create:b"], ["create:b", "create:c"]]


def test_the_setting_is_read_and_defaults_to_three() -> None:
    assert from_environ({}).dtma_deploy_concurrency == 3
    assert from_environ({"RECONCILER_DTMA_DEPLOY_CONCURRENCY": "5"}).dtma_deploy_concurrency == 5


def _apply(tmp_path: Path, concurrency: int, gather: int, creates: int) -> tuple[list[str], int, list[tuple]]:
    with running_simulator(toolboxes=1) as sim:
        box = sim.sim.toolbox(0)
        box.deploy_gather = gather
        store = SqliteStore(tmp_path / "state.db", create=True)
        journal = Journal(tmp_path / "j.db")
        dtma = DtmaClient(retry=RetryPolicy(attempts=2, base_delay=0.01))
        try:
            address = sim.addresses[0]
            env = store.add_environment("tb0", address.rsplit(":", 1)[0])
            targets = {env.id: DtmaTarget(env.id, f"http://{address}", Secret(sim.token))}
            steps = [_create(f"s{i}", env.id) for i in range(creates)]
            run_id = journal.start_run("apply", SystemClock().now())
            executor = Executor(
                store=store, dtma=dtma, targets=targets, journal=journal, run_id=run_id, clock=SystemClock(),
                sleep=time.sleep, secret_values={}, secret_fingerprints={},
                config=ExecutorConfig(poll_interval=0.01, ready_timeout=5, deploy_concurrency=concurrency),
            )  # fmt: skip
            outcomes = [str(r.outcome) for r in executor.apply(steps).results]
            rows = [(s.server, s.intent_at, s.outcome_at, s.outcome) for s in journal.steps()]
            return outcomes, box.most_deploys_in_flight, rows
        finally:
            dtma.close()
            store.close()
            journal.close()


def test_creates_on_one_toolbox_are_sent_up_to_the_setting_at_once(tmp_path: Path) -> None:
    outcomes, most, rows = _apply(tmp_path, concurrency=3, gather=3, creates=6)
    assert outcomes == ["ok"] * 6
    assert most == 3
    # Each create journalled its intent before its outcome, overlapping or not.
    assert sorted(r[0] for r in rows) == [f"s{i}" for i in range(6)]
    assert all(r[3] == "ok" and r[1] <= r[2] for r in rows)


def test_a_concurrency_of_one_sends_one_deploy_at_a_time(tmp_path: Path) -> None:
    outcomes, most, _ = _apply(tmp_path, concurrency=1, gather=0, creates=4)
    assert outcomes == ["ok"] * 4
    assert most == 1
