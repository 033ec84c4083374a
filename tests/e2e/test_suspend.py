"""``reconciler suspend`` and ``resume`` through the real command: plan (text and JSON) marks the suspended
toolbox and shows its drift, apply leaves it and exits 1, status and journal say who and why. SQLite: the
behaviour does not depend on the store (the PostgreSQL replicas are in tests/app/daemon/test_suspend.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest

from reconciler.resources import schema_path
from tests.e2e.conftest import World, _make_world, all_containers, kinds_of, server, steps_of


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    gen = _make_world(tmp_path, f"sqlite:///{tmp_path / 'state.db'}", 1)
    w = next(gen)
    w.write({"tb0": [server("time")]})
    done = w.cli("apply", str(w.manifests))
    assert done.returncode == 0, done.stderr
    yield w
    gen.close()


def test_suspend_plan_apply_status_journal_resume(world: World) -> None:
    w = world
    unknown = w.cli("suspend", "tb7", "--reason", "x")
    assert unknown.returncode == 1 and "'tb7' is not in the database (valid: tb0)" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    done = w.cli("suspend", "tb0", "--reason", "incident 42", "--by", "alice@ops-1")
    assert done.returncode == 0, done.stderr
    assert "tb0: suspended by alice@ops-1 at" in done.stdout and "incident 42" in done.stdout
    w.sim.admin(0, "POST", "/__sim/docker/stop", {"name": "time"})

    text = w.cli("plan", str(w.manifests), "--detailed-exitcode")
    assert text.returncode == 3, text.stderr  # a (destructive) change, and complete: plan saw everything
    assert "! suspended tb0: suspended by alice@ops-1" in text.stdout and "restart time" in text.stdout
    plan = w.plan_json()
    jsonschema.validate(plan, json.loads(schema_path("plan.v1.schema.json").read_text()))
    assert steps_of(plan) == [("tb0", "time", "restart")] and ("tb0", None, "suspended") in kinds_of(plan)

    applied = w.cli("apply", str(w.manifests), "--auto-approve")
    assert applied.returncode == 1, applied.stdout + applied.stderr  # nothing applied, not converged
    assert "suspended" in applied.stdout
    assert all_containers(w, 0)["time"]["state"] == "exited"

    status = w.cli("status")
    assert status.returncode == 0, status.stderr
    assert "tb0: suspended by alice@ops-1 at" in status.stdout and "tb0/time (suspended)" in status.stdout
    rows = json.loads(w.cli("status", "--format", "json").stdout)
    assert rows[0]["suspended"]["by"] == "alice@ops-1" and rows[0]["suspended"]["reason"] == "incident 42"

    journal = w.cli("journal", "--env", "tb0")
    assert "suspend" in journal.stdout and "(by alice@ops-1: incident 42)" in journal.stdout

    resumed = w.cli("resume", "tb0")
    assert resumed.returncode == 0 and "tb0 resumed" in resumed.stdout
    again = w.cli("apply", str(w.manifests), "--auto-approve")
    assert again.returncode == 0, again.stdout + again.stderr
    assert all_containers(w, 0)["time"]["state"] == "running"
