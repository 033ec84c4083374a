"""Readiness end to end: the real prober against the simulator's MCP servers, the real stores and journal.

A healthy server converges with what it offers recorded in ``mcp_discovery_metadata``; a server whose image
never answers MCP ends ``unready``, ``apply`` exits 4, and ``status`` shows it unhealthy with the probe's
error; a server that offers less than declared is drift without a restart.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.app.reconcile import reconcile_once
from reconciler.app.stores import open_store
from reconciler.core.outcomes import RunOutcome, StepOutcome
from reconciler.core.plan import NoticeKind
from tests.app.daemon.conftest import TOKEN, DaemonWorld, make_world

IMAGE = "ghcr.io/acme/time:1.0.0"


def mcp_server(name: str = "time", image: str = IMAGE, host_port: int = 31801, **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": image, "transport": "streamable-http", "endpoint": "/mcp", "port": 8080,
            "hostPort": host_port, **extra}  # fmt: skip


@pytest.fixture
def w(tmp_path: Path) -> Iterator[DaemonWorld]:
    yield from make_world(tmp_path, f"sqlite:///{tmp_path / 'state.db'}", 1)


def cli(w: DaemonWorld, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECONCILER_", "DTMA_", "BACKEND_TO"))}
    env.update(extra)
    env.update({"RECONCILER_DATABASE_URL": w.database_url, "RECONCILER_JOURNAL": str(w.tmp / "journal.db"),
                "RECONCILER_SECRET_KEY": "daemon-test-key", "BACKEND_TO_DTMA_API_KEY": TOKEN,
                "DTMA_PORT": str(w.port), "NO_COLOR": "1", "RECONCILER_PROBE_TIMEOUT": "2"})  # fmt: skip
    return subprocess.run([sys.executable, "-m", "reconciler", *args], env=env, cwd=w.tmp, capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip


def row_of(w: DaemonWorld, name: str) -> dict[str, Any]:
    store = open_store(w.database_url)
    try:
        [row] = [i for i in store.observe_instances() if i.name == name]
        health = store.recorded_health().get(row.id)
    finally:
        store.close()
    return {"status": row.status, "error": row.error_message, "health": health}


def apply(w: DaemonWorld, **settings: Any) -> Any:
    # The readiness wait sleeps through the world's clock: time moves on without the test waiting for it.
    return reconcile_once(w.settings(probe_timeout=2.0, **settings), [str(w.manifests)], apply=True,
                          lock_wait=1.0, sleep=w.clock.advance)  # fmt: skip


def test_a_healthy_server_converges_with_what_it_offers_recorded(w: DaemonWorld) -> None:
    w.sim.sim.set_mcp(IMAGE, tools=["now", "convert"], prompts=["tz"])
    w.write({"tb0": [mcp_server(capabilities=["tools", "prompts"], tools=["now"])]})
    report = apply(w)
    assert report.outcome is RunOutcome.CONVERGED, [r.message for r in report.results]
    [create] = report.results
    assert create.outcome is StepOutcome.OK and create.probe is not None and create.probe.ok
    row = row_of(w, "time")
    assert row["status"] == "running"
    health = row["health"]
    assert health["health"] == "healthy" and health["last_probe"]["ok"] is True
    assert (sorted(health["tools"]), health["prompts"], health["server_name"]) == (
        ["convert", "now"],
        ["tz"],
        "time",
    )
    assert health["protocol_version"] and health["transport"] == "streamable-http"  # the reconciler's keys stay

    plan = cli(w, "plan", str(w.manifests), "--format", "json", "--detailed-exitcode")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    data = json.loads(plan.stdout)
    assert data["complete"] is True and data["steps"] == []
    assert [(h["server"], h["ok"], sorted(h["tools"])) for h in data["health"]] == [
        ("time", True, ["convert", "now"])
    ]

    # The toolbox can no longer be listed: a past probe does not make it look healthy.
    w.sim.sim.set_faults(0, docker_down=True)
    for args in (("status",), ("status", str(w.manifests))):
        shown = cli(w, *args)
        [line] = [x for x in shown.stdout.splitlines() if x.startswith("tb0/time")]
        assert "live=unreachable" in line and "health=unknown (last probe passed at " in line, shown.stdout
        assert "health=healthy" not in line
    [row] = json.loads(cli(w, "status", "--format", "json").stdout)
    assert (row["health"], row["probe"]["ok"]) == ("unknown", True)


def test_a_server_that_never_answers_mcp_ends_unready_apply_exits_4_and_status_says_why(w: DaemonWorld) -> None:
    w.sim.sim.set_mcp(IMAGE, fault="broken")  # the container runs; nothing in it listens
    w.write({"tb0": [mcp_server(readiness={"timeout": 1})]})
    done = cli(w, "apply", str(w.manifests))
    assert done.returncode == 4, done.stdout + done.stderr
    assert "unready" in done.stdout + done.stderr and "run partial" in done.stderr
    assert "tb0/time: running, but not ready after 1s (mcp probe): connection refused" in done.stdout + done.stderr
    row = row_of(w, "time")
    assert row["status"] == "error_runtime" and "connection refused" in row["error"]
    assert row["health"]["health"] == "unhealthy"

    status = cli(w, "status")
    assert status.returncode == 0, status.stderr
    [line] = [x for x in status.stdout.splitlines() if x.startswith("tb0/time")]
    assert "recorded=error_runtime" in line and "health=unhealthy (connection refused)" in line
    against = cli(w, "status", str(w.manifests))  # against git: the same recorded health, and the probe's notice
    [line] = [x for x in against.stdout.splitlines() if x.startswith("tb0/time")]
    assert "health=unhealthy (connection refused)" in line, against.stdout + against.stderr
    # error_runtime is what a failing server's row should say: no 'status' difference, no sync-status back to
    # running, and the summary does not call the toolbox in sync without naming the failing probe.
    assert "differs=-" in line and "sync-status" not in against.stdout, against.stdout
    assert "! probe-failed: time runs but failed its mcp readiness probe" in against.stdout
    assert against.stdout.rstrip().endswith("1 failed the last readiness probe (tb0/time).")
    journal = json.loads(cli(w, "journal", "--format", "json", "--limit", "1").stdout)
    assert [s["outcome"] for r in journal for s in r["steps"]] == ["unready"]
    failing = cli(w, "plan", str(w.manifests))
    assert failing.returncode == 1 and "probe-failed" in failing.stdout  # a server that does not answer: a gap
    off = cli(w, "plan", str(w.manifests), RECONCILER_READINESS="off")  # the container state alone
    assert off.returncode == 0 and "probe-failed" not in off.stdout, off.stdout + off.stderr

    # The daemon re-probes: once the server answers, the next apply sees it healthy and repairs the status.
    w.sim.sim.set_mcp(IMAGE, fault="none")
    report = apply(w)
    assert [(s.action.value, s.status_to) for s in report.plan.steps] == [("sync-status", "running")]
    assert report.outcome is RunOutcome.CONVERGED
    assert row_of(w, "time")["health"]["health"] == "healthy"


def test_offering_less_than_declared_is_drift_without_a_restart(w: DaemonWorld) -> None:
    w.write({"tb0": [mcp_server(capabilities=["tools"], tools=["echo"])]})
    assert apply(w).outcome is RunOutcome.CONVERGED
    w.sim.sim.set_mcp(IMAGE, tools=["echo2"])  # a new build renamed its tool
    report = apply(w)
    assert report.plan is not None and report.plan.steps == ()
    assert [(n.kind, n.message) for n in report.plan.notices] == [
        (NoticeKind.OFFER_DRIFT, "time offers less than declared: pinned tools not listed: echo")
    ]
    assert report.outcome is RunOutcome.INCOMPLETE  # not converged: the server does not offer what is declared
    assert w.creates(0) == 1
    status = cli(w, "status", str(w.manifests))  # deployed as declared, but not offering it: not "in sync"
    assert "! offer-drift: time offers less than declared: pinned tools not listed: echo" in status.stdout
    assert status.stdout.rstrip().endswith("but 1 offer less than declared (tb0/time)."), status.stdout
    assert "match the manifests" not in status.stdout


def test_a_new_server_that_offers_less_than_declared_is_unready_not_converged(w: DaemonWorld) -> None:
    """The readiness wait checks the offer too: an apply whose image lists no pinned tool does not end converged
    (the next plan would report the offer drift)."""
    w.sim.sim.set_mcp(IMAGE, tools=["echo2"])
    w.write({"tb0": [mcp_server(capabilities=["tools"], tools=["echo"])]})
    report = apply(w)
    [result] = report.results
    assert result.outcome is StepOutcome.UNREADY
    assert result.message == "tb0/time: running, but it offers less than declared: pinned tools not listed: echo"
    assert report.outcome is RunOutcome.PARTIAL
    assert row_of(w, "time")["status"] == "running"  # it runs and answers: only the offer is short
    again = apply(w)  # nothing a step can fix: drift reported, no second deploy
    assert again.plan is not None and again.plan.steps == ()
    assert [n.kind for n in again.plan.notices] == [NoticeKind.OFFER_DRIFT]
    assert w.creates(0) == 1
