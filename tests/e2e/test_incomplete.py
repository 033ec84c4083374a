"""Incomplete is not clean: a plan that could not see, or may not do, part of what it speaks for says so
and exits 1; apply and run --once exit non-zero; the journal never says converged. Through the real
command against the simulator (SQLite: the verdict does not depend on the store)."""

from __future__ import annotations

import json
import socket
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import jsonschema
import pytest

from reconciler.resources import schema_path
from tests.e2e.conftest import World, _make_world, server

Setup = Callable[[World], None]
PLAN_SCHEMA = json.loads(schema_path("plan.v1.schema.json").read_text())


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    gen = _make_world(tmp_path, f"sqlite:///{tmp_path / 'state.db'}", 1)
    w = next(gen)
    w.write({"tb0": [server(n) for n in ("srv-a", "srv-b", "srv-c", "srv-d")]}, prune=True)
    done = w.cli("apply", str(w.manifests))
    assert done.returncode == 0, done.stderr
    yield w
    gen.close()


def closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])  # closed again when this returns: nothing listens there


def bump(w: World) -> None:
    """A pending change, so that an unobserved toolbox cannot hide behind "no changes"."""
    servers = [server(n) for n in ("srv-b", "srv-c", "srv-d")]
    w.write({"tb0": [server("srv-a", image="ghcr.io/acme/srv-a:2.0.0"), *servers]}, prune=True)


def nothing_listening(w: World) -> None:
    bump(w)
    w.extra_env["DTMA_PORT"] = closed_port()


def no_token(w: World) -> None:
    bump(w)
    w.extra_env["BACKEND_TO_DTMA_API_KEY"] = ""


def token_rejected(w: World) -> None:
    bump(w)
    w.extra_env["BACKEND_TO_DTMA_API_KEY"] = "not-the-agents-token"


def docker_down(w: World) -> None:
    bump(w)
    w.sim.sim.set_faults(0, docker_down=True)


def mass_delete(w: World) -> None:
    w.write({"tb0": [server("srv-a")]}, prune=True)


def empty_refused(w: World) -> None:
    w.write({"tb0": []}, prune=True)


def name_taken_by_a_stranger(w: World) -> None:
    stranger = {"name": "srv-x", "instance_id": "ffffffff-0000-4000-8000-000000000000"}
    w.sim.admin(0, "POST", "/__sim/seed", {"containers": [stranger]})
    w.write({"tb0": [server(n) for n in ("srv-a", "srv-b", "srv-c", "srv-d", "srv-x")]}, prune=True)


def not_in_the_database(w: World) -> None:
    w.write({"tb0": [server(n) for n in ("srv-a", "srv-b", "srv-c", "srv-d")], "tb-missing": [server("srv-m")]})


CASES: dict[str, tuple[Setup, str, str]] = {
    # name: (setup, the toolbox named, the journal outcome of apply)
    "every toolbox unreachable": (nothing_listening, "tb0 at 127.", "incomplete"),
    "no DTMA token": (no_token, "tb0 at 127.", "incomplete"),
    "token rejected (403)": (token_rejected, "tb0 at 127.", "incomplete"),
    "Docker unreachable on the host": (docker_down, "tb0 at 127.", "incomplete"),
    "mass delete refused": (mass_delete, "tb0 at 127.", "refused"),
    "allowEmpty refused": (empty_refused, "tb0 at 127.", "refused"),
    "declared server blocked by a container not ours": (name_taken_by_a_stranger, "tb0 at 127.", "incomplete"),
    "environment not in the database": (not_in_the_database, "tb-missing", "incomplete"),
}


def apply_outcomes(w: World) -> list[str]:
    with sqlite3.connect(w.tmp / "journal.db") as db:
        rows = db.execute("SELECT outcome FROM runs WHERE kind = 'apply' ORDER BY id").fetchall()
    return [str(r[0]) for r in rows]


@pytest.mark.parametrize("case", list(CASES))
def test_an_incomplete_plan_is_never_clean(world: World, case: str) -> None:
    setup, named, outcome = CASES[case]
    setup(world)
    manifests = str(world.manifests)
    plan = world.cli("plan", manifests, "--detailed-exitcode")
    assert plan.returncode == 1, plan.stdout + plan.stderr
    assert plan.stdout.startswith("Incomplete plan:") and f"! {named}" in plan.stdout
    as_json = world.cli("plan", manifests, "--format", "json")
    assert as_json.returncode == 1 and f"incomplete: {named}" in as_json.stderr
    data = json.loads(as_json.stdout)
    jsonschema.validate(data, PLAN_SCHEMA)
    assert data["complete"] is False and data["incomplete"]
    gap_names = {f"{g['environment']} at {g['address']}" if g["address"] else g["environment"]
                 for g in data["incomplete"]}  # fmt: skip
    assert any(n.startswith(named) for n in gap_names) and all(g["reason"] for g in data["incomplete"])
    assert world.cli("plan", manifests).returncode == 1
    accepted = world.cli("plan", manifests, "--detailed-exitcode", "--allow-incomplete")
    assert accepted.returncode in (0, 2, 3) and f"! {named}" in accepted.stdout
    before = len(apply_outcomes(world))
    applied = world.cli("apply", manifests)
    assert applied.returncode != 0 and f"! {named}" in applied.stdout
    once = world.cli("run", manifests, "--once")
    assert once.returncode != 0, once.stderr
    runs = apply_outcomes(world)[before:]
    assert runs == [outcome, outcome]


def test_a_clean_plan_still_exits_0_and_changes_2_or_3(world: World) -> None:
    manifests = str(world.manifests)
    assert world.cli("plan", manifests, "--detailed-exitcode").returncode == 0
    clean = json.loads(world.cli("plan", manifests, "--format", "json").stdout)
    jsonschema.validate(clean, PLAN_SCHEMA)
    assert (clean["complete"], clean["incomplete"]) == (True, [])
    world.write({"tb0": [server(n) for n in ("srv-a", "srv-b", "srv-c", "srv-d", "srv-e")]}, prune=True)
    assert world.cli("plan", manifests, "--detailed-exitcode").returncode == 2
    world.write({"tb0": [server(n) for n in ("srv-a", "srv-b", "srv-c")]}, prune=True)
    assert world.cli("plan", manifests, "--detailed-exitcode").returncode == 3
    assert world.cli("apply", manifests).returncode == 0
    assert apply_outcomes(world)[-1] == "converged"


def test_env_matching_nothing_lists_the_valid_names(world: World) -> None:
    done = world.cli("plan", str(world.manifests), "--env", "typo-toolbox")
    assert done.returncode == 1
    assert "typo-toolbox" in done.stderr and "valid: tb0" in done.stderr
