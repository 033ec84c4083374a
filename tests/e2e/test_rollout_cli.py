"""Rollouts through the real `reconciler` command: the plan shows the waves, `apply` halts and exits 4, the
journal says why; `--no-rollout` turns the waves off (what it does is tested on the daemon)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from reconciler.app.reconcile import reconcile_once
from reconciler.app.stores import open_store
from reconciler.cli import build_parser
from reconciler.cli.plan_cmd import settings_from
from reconciler.core.outcomes import RunOutcome
from reconciler.core.suspension import Suspension
from reconciler.resources import schema_path
from tests.app.daemon.conftest import TOKEN, DaemonWorld, make_world, server

OLD, BROKEN = "ghcr.io/acme/time:1.0.0", "ghcr.io/acme/time:2.0.0"
PLAN_SCHEMA = json.loads(schema_path("plan.v1.schema.json").read_text())


def cli(w: DaemonWorld, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECONCILER_", "DTMA_", "BACKEND_TO"))}
    env.update({"RECONCILER_DATABASE_URL": w.database_url, "RECONCILER_JOURNAL": str(w.tmp / "journal.db"),
                "RECONCILER_SECRET_KEY": "daemon-test-key", "BACKEND_TO_DTMA_API_KEY": TOKEN,
                "DTMA_PORT": str(w.port), "NO_COLOR": "1"})  # fmt: skip
    return subprocess.run([sys.executable, "-m", "reconciler", *args], env=env, cwd=w.tmp, capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip


def fleet(w: DaemonWorld, image: str) -> None:
    # A published sse server: ready once it answers the MCP handshake (within half a second here).
    spec = server("time", image=image, hostPort=31802, readiness={"timeout": 0.5})
    w.write({name: [spec] for name in w.names})


@pytest.fixture
def w(tmp_path: Path) -> Iterator[DaemonWorld]:
    yield from make_world(tmp_path, f"sqlite:///{tmp_path / 'state.db'}", 4)


def test_plan_shows_the_waves_and_apply_halts_on_an_unready_first_wave(w: DaemonWorld) -> None:
    fleet(w, OLD)
    first = reconcile_once(w.settings(), [str(w.manifests)], apply=True, lock_wait=1.0)
    assert first.outcome is RunOutcome.CONVERGED
    w.sim.sim.set_mcp(BROKEN, fault="broken")  # it deploys and runs, but its MCP server never answers
    fleet(w, BROKEN)

    store = open_store(w.database_url)
    try:  # a suspended toolbox's replace is still shown by plan, but takes no part in the waves
        tb3 = next(e.id for e in store.observe().environments if e.name == "tb3")
        store.suspend_environment(Suspension(tb3, "incident", "ops", datetime.now(UTC)))
        done = cli(w, "plan", str(w.manifests), "--format", "json", "--allow-incomplete")
        store.resume_environment(tb3)
    finally:
        store.close()
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    jsonschema.validate(data, PLAN_SCHEMA)
    assert len(data["steps"]) == 4
    [rollout] = data["rollouts"]
    assert rollout["image"] == BROKEN
    waves = [[e["name"] for e in wave["environments"]] for wave in rollout["waves"]]
    assert waves == [["tb0"], ["tb1", "tb2"]]

    done = cli(w, "apply", str(w.manifests))
    assert done.returncode == 4, done.stderr  # a halted rollout is a partial run
    assert "wave 1 (first wave): tb0" in done.stdout
    assert "wave 2 (then, at most 10 at a time): tb1, tb2, tb3" in done.stdout
    assert "skipped: replace tb1/time: rollout halted: time on tb0 unready:" in done.stderr
    assert "unready: replace tb0/time: tb0/time: running, but not ready after" in done.stderr  # with its error
    [halt] = [line for line in done.stderr.splitlines() if line.startswith("rollout-halted: tb0/time: ")]
    assert "tb1, tb2, tb3" in halt, halt  # the notice, once, naming the toolboxes that keep the old version
    assert "apply: 0 of 4 steps done; run partial" in done.stderr  # the unready step is not "done"
    listed = {i: (w.containers(i).get("time") or {}).get("image") for i in range(4)}
    assert listed == {0: BROKEN, 1: OLD, 2: OLD, 3: OLD}  # the live listings: three keep the old version

    journal = cli(w, "journal", "--format", "json", "--limit", "1")
    assert journal.returncode == 0, journal.stderr
    assert journal.stdout.count("rollout halted: time on tb0 unready") == 3


def test_no_rollout_is_a_flag_of_plan_apply_and_run() -> None:
    for command in ("plan", "apply", "run"):
        args = build_parser().parse_args([command, "manifests/", "--no-rollout"])
        assert settings_from(args).rollout is False
        assert settings_from(build_parser().parse_args([command, "manifests/"])).rollout is True
