"""plan and apply end to end: the real command, the simulator, SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from tests.e2e.conftest import CANARY, World, all_containers, kinds_of, server, steps_of

SECRET_ENV = {"API_KEY": {"secretFromEnv": "CANARY_VAR"}, "LOG_LEVEL": "info"}


def test_lifecycle_from_nothing_to_prune(world_factory: Callable[..., World]) -> None:
    w = world_factory(2)
    w.write({"tb0": [server("srv-a", env=SECRET_ENV), server("srv-b")], "tb1": [server("srv-c")]})
    outputs: list[str] = []

    def run(*args: str) -> int:
        done = w.cli(*args)
        outputs.extend([done.stdout, done.stderr])
        return done.returncode

    # create from nothing
    assert run("plan", str(w.manifests), "--detailed-exitcode") == 2
    assert run("apply", str(w.manifests)) == 0, outputs[-1]
    assert {n: c["state"] for n, c in all_containers(w, 0).items() if c["managed"]} == {
        "srv-a": "running",
        "srv-b": "running",
    }
    assert all_containers(w, 1)["srv-c"]["state"] == "running"
    assert f"API_KEY={CANARY}" in w.sim.sim.env_of(0, "srv-a")
    # a second plan has nothing to do
    assert run("plan", str(w.manifests), "--detailed-exitcode") == 0, outputs[-2]
    # image change -> replace (destructive: 3)
    w.write({"tb0": [server("srv-a", env=SECRET_ENV), server("srv-b", image="ghcr.io/acme/srv-b:2.0.0")],
             "tb1": [server("srv-c")]})  # fmt: skip
    assert ("tb0", "srv-b", "replace") in steps_of(w.plan_json())
    assert run("plan", str(w.manifests), "--detailed-exitcode", "--out", str(w.tmp / "plan.json")) == 3
    assert run("apply", str(w.manifests)) == 0, outputs[-1]
    assert all_containers(w, 0)["srv-b"]["image"] == "ghcr.io/acme/srv-b:2.0.0"
    # a crashed container -> restart
    w.sim.admin(0, "POST", "/__sim/exit-after", {"name": "srv-a", "seconds": 0})
    assert steps_of(w.plan_json()) == [("tb0", "srv-a", "restart")]
    assert run("apply", str(w.manifests)) == 0, outputs[-1]
    assert all_containers(w, 0)["srv-a"]["state"] == "running"
    # desired stopped -> stop
    w.write({"tb0": [server("srv-a", env=SECRET_ENV), server("srv-b", image="ghcr.io/acme/srv-b:2.0.0")],
             "tb1": [server("srv-c", state="stopped")]})  # fmt: skip
    assert steps_of(w.plan_json()) == [("tb1", "srv-c", "stop")]
    assert run("apply", str(w.manifests)) == 0, outputs[-1]
    assert all_containers(w, 1)["srv-c"]["state"] != "running"
    assert run("plan", str(w.manifests), "--detailed-exitcode") == 0, outputs[-2]
    # prune off: b is an orphan, kept
    w.write({"tb0": [server("srv-a", env=SECRET_ENV)], "tb1": [server("srv-c", state="stopped")]})
    plan = w.plan_json()
    assert steps_of(plan) == [] and ("tb0", "srv-b", "orphan") in kinds_of(plan)
    # prune on: b is deleted; the agent's own containers are untouched
    w.write({"tb0": [server("srv-a", env=SECRET_ENV)], "tb1": [server("srv-c", state="stopped")]}, prune=True)
    assert steps_of(w.plan_json()) == [("tb0", "srv-b", "delete")]
    assert run("apply", str(w.manifests)) == 0, outputs[-1]
    assert "srv-b" not in all_containers(w, 0)
    assert w.sim.counters(0).get("POST /tools", 0) == 3  # a, b, b again (replace): never twice by mistake
    # the canary secret is nowhere but in the simulator's Env
    outputs.append(w.cli("journal", "--format", "json").stdout)
    outputs.append(w.cli("status", "--format", "json").stdout)
    assert not [o for o in outputs if CANARY in o]
    for f in w.tmp.rglob("*"):
        if f.is_file():
            assert CANARY.encode() not in f.read_bytes(), f
    if w.database_url.startswith("postgres"):
        assert CANARY not in _dump_postgres(w.database_url)


def _dump_postgres(url: str) -> str:
    import psycopg

    out: list[str] = []
    with psycopg.connect(url) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")]  # fmt: skip
        for t in tables:
            out.extend(str(row) for row in conn.execute(f'SELECT * FROM "{t}"'))
    return "\n".join(out)


def test_unreachable_toolbox_and_unmanaged_containers_are_untouched(world_factory: Callable[..., World]) -> None:
    w = world_factory(2, shapes={1: "b"})
    w.sim.sim.set_faults(0, drop=True)
    w.write({"tb0": [server("srv-a")], "tb1": [server("srv-c")]}, prune=True)
    plan = w.plan_json(code=1)  # incomplete: a toolbox in scope was not observed
    assert ("tb0", None, "unreachable") in kinds_of(plan)
    assert steps_of(plan) == [("tb1", "srv-c", "create")]
    assert steps_of(w.plan_json("--allow-incomplete")) == [("tb1", "srv-c", "create")]
    applied = w.cli("apply", str(w.manifests))
    # tb1 was changed while tb0 went unseen: partially applied (4), neither converged (0) nor "nothing" (1)
    assert applied.returncode == 4 and "! tb0 at 127." in applied.stdout
    assert w.sim.counters(0).get("POST /tools", 0) == 0
    # the agent's own containers are on its public /status only; the reconciler reads the authenticated
    # /tools/status (managed containers), so they are neither listed nor deleted, even with prune on
    kinds = kinds_of(w.plan_json(code=1))
    assert not [k for k in kinds if k[1] in ("dtma_manager", "agentopia_backend")]
    assert w.sim.counters(1).get("GET /status", 0) == 0
    assert w.sim.counters(1).get("DELETE /tools/{name}", 0) == 0
    w.sim.sim.clear_faults(0)
    assert steps_of(w.plan_json()) == [("tb0", "srv-a", "create")]


def test_stale_saved_plan_is_refused_and_a_fresh_one_applies(world_factory: Callable[..., World]) -> None:
    w = world_factory(1)
    w.write({"tb0": [server("srv-a"), server("srv-b")]})
    saved = w.tmp / "plan.json"
    assert w.cli("plan", str(w.manifests), "--out", str(saved)).returncode == 0
    assert CANARY not in saved.read_text()
    assert w.cli("apply", str(saved)).returncode == 0
    # the world moves on after a second plan was saved: that plan is refused, nothing applied
    w.write({"tb0": [server("srv-a"), server("srv-b", image="ghcr.io/acme/srv-b:3.0.0")]})
    assert w.cli("plan", str(w.manifests), "--out", str(saved)).returncode == 0
    w.sim.admin(0, "POST", "/__sim/exit-after", {"name": "srv-a", "seconds": 0})
    before = dict(w.sim.counters(0))
    done = w.cli("apply", str(saved))
    assert done.returncode == 1
    assert "stale" in done.stderr and "changed" in done.stderr
    after = {k: v for k, v in w.sim.counters(0).items() if not k.startswith("GET")}
    assert after == {k: v for k, v in before.items() if not k.startswith("GET")}


def test_mass_delete_is_refused_then_allowed_with_a_reason(world_factory: Callable[..., World]) -> None:
    w = world_factory(1)
    w.write({"tb0": [server(n) for n in ("srv-a", "srv-b", "srv-c", "srv-d")]}, prune=True)
    assert w.cli("apply", str(w.manifests)).returncode == 0
    w.write({"tb0": [server("srv-a")]}, prune=True)
    refused = w.cli("apply", str(w.manifests))
    assert refused.returncode == 1
    assert len([c for c in all_containers(w, 0).values() if c["managed"]]) == 4
    allowed = w.cli("apply", str(w.manifests), "--allow-mass-delete", "retiring b c d")
    assert allowed.returncode == 0, allowed.stderr
    assert [n for n, c in all_containers(w, 0).items() if c["managed"]] == ["srv-a"]
    runs: list[dict[str, Any]] = json.loads(w.cli("journal", "--format", "json").stdout)
    assert any("retiring b c d" in (r.get("note") or "") for r in runs)
