"""The executor against the real simulator over HTTP, through the real DTMA client."""

from __future__ import annotations

import time
from pathlib import Path

from reconciler.adapters.clock import SystemClock
from reconciler.adapters.dtma_client import DtmaClient, RetryPolicy
from reconciler.adapters.journal import Journal
from reconciler.adapters.sqlite_store import SqliteStore
from reconciler.core.plan import Action, Step
from reconciler.model.secrets import Secret
from reconciler.model.spec import SecretRef, ServerSpec
from reconciler.ports import DtmaTarget
from reconciler.runtime.execute import Executor, ExecutorConfig
from tests.sim_helpers import running_simulator

CANARY = "canary-sim-5a4b3c"


def test_create_stop_restart_delete_through_the_simulator(tmp_path: Path) -> None:
    spec = ServerSpec(name="ctx", image="ghcr.io/u/ctx:1", transport="sse", port=8080, host_port=31001,
                      env=(("K", SecretRef("CANARY_VAR")),))  # fmt: skip
    with running_simulator(toolboxes=2, start_delay=0.05) as sim:
        store, journal = (
            SqliteStore(tmp_path / "state.db", create=True),
            Journal(tmp_path / "j.db", secrets=[CANARY]),
        )
        dtma = DtmaClient(retry=RetryPolicy(attempts=2, base_delay=0.01))
        targets = {}
        for i, address in enumerate(sim.addresses):
            env = store.add_environment(f"tb{i}", address.rsplit(":", 1)[0])
            targets[env.id] = DtmaTarget(env.id, f"http://{address}", Secret(sim.token))
        first = next(iter(targets))

        def rows() -> dict[str, str]:
            return {i.id: i.status for i in store.observe().instances if i.environment_id == first}

        def run(*steps: Step) -> list[str]:
            ex = Executor(store=store, dtma=dtma, targets=targets, journal=journal,
                          run_id=journal.start_run("apply", SystemClock().now()), clock=SystemClock(),
                          sleep=time.sleep, secret_values={"CANARY_VAR": CANARY},
                          secret_fingerprints={"CANARY_VAR": "fp"},
                          config=ExecutorConfig(poll_interval=0.01, ready_timeout=5))  # fmt: skip
            return [r.outcome for r in ex.apply(steps).results]

        create = [Step(e, e, "ctx", Action.CREATE, "absent", desired=spec, spec_hash="h") for e in targets]
        assert run(*create) == ["ok", "ok"]
        assert f"K={CANARY}" in sim.sim.env_of(0, "ctx")
        [(iid, status)] = rows().items()
        assert status == "running"
        assert CANARY not in repr(store.observe())
        sim.admin(0, "POST", "/__sim/exit-after", {"name": "ctx", "seconds": 0})
        assert run(Step(first, "tb0", "ctx", Action.RESTART, "exited", instance_id=iid)) == ["ok"]
        assert rows() == {iid: "running"}
        assert run(Step(first, "tb0", "ctx", Action.DELETE, "pruned", instance_id=iid)) == ["ok"]
        assert rows() == {}
        assert sim.counters(0)["POST /tools"] == 1
        assert sim.counters(1)["POST /tools"] == 1
        dtma.close()
        store.close()
