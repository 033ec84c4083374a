"""The benchmark never rots: ``python -m tests.benchmarks --quick`` runs and reports every scenario.

Timings are never asserted here (performance is shown by the benchmark run on purpose); what each run
observed that must hold whatever the timings is: convergence, call counts, no error.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_run_reports_every_scenario(tmp_path: Path) -> None:
    out = tmp_path / "quick.json"
    done = subprocess.run(
        [sys.executable, "-m", "tests.benchmarks", "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads(out.read_text())
    rows = data["rows"]
    assert not [r for r in rows if "error" in r]
    scenarios = [r["scenario"] for r in rows]
    for expected in (
        "observe (store + listings)",
        "plan (reconcile_once, no apply)",
        "plan (reconciler plan, fresh process)",
        "plan path split: load",
        "plan path split: observe",
        "plan path split: plan",
        "plan path split: journal",
        "observe (PostgreSQL)",
        "plan (PostgreSQL, reconcile_once)",
        "baseline: list one by one",
        "apply (reconcile_once)",
        "apply (PostgreSQL)",
        "apply, real deploy latency",
        "core diff + plan",
        "start-up: reconciler --version",
        "start-up: reconciler validate examples/",
        "status page: GET /",
        "probe (MCP handshake)",
        "probed steady cycle (Daemon.cycle())",
    ):
        assert expected in scenarios, scenarios
    steady = [r for r in rows if r["scenario"].startswith("steady state (")]
    assert len(steady) == 3 and len([r for r in rows if r["scenario"] == "core diff + plan"]) == 2
    for r in rows:  # every row carries its figures and its target, whatever they are
        assert r["wall_s"] > 0 and r["cpu_s"] is not None and r["peak_mb"] > 0
        assert r["scenario"] in done.stdout and r["target"]
        assert (r["met"] is None) == r["scenario"].startswith("plan path split: ")
    # What the quick run measured that must hold whatever the timings (the first row of a scenario: the
    # 1,000-toolbox sizes; the fleet-scale rows are checked below).
    facts: dict[str, dict] = {}
    for r in rows:
        if not r["scenario"].startswith(("core", "steady")):
            facts.setdefault(r["scenario"], r["facts"])
    assert facts["observe (store + listings)"] == {"complete_listings": 20, "toolboxes": 20}
    assert facts["plan (reconcile_once, no apply)"] == {"steps": 0, "errors": 0}
    assert facts["plan (reconciler plan, fresh process)"] == {"exit": 0}
    assert facts["observe (PostgreSQL)"] == facts["plan (PostgreSQL, reconcile_once)"] == {"store": "postgresql"}
    assert facts["baseline: list one by one"]["listed_one_by_one"] == 20
    assert facts["status page: GET /"] == {"rows": 50, "incomplete_first": True, "api_environments": 100}
    for name in ("apply (reconcile_once)", "apply (PostgreSQL)", "apply, real deploy latency"):
        assert facts[name]["outcome"] == "converged" and facts[name]["deploys"] == facts[name]["creates"] == 12
    assert facts["probe (MCP handshake)"] == {"probed": 30, "ok": 30, "first_error": []}
    assert facts["probe (steady state, kept sessions)"] == {"probed": 30, "ok": 30, "first_error": [], "kept": 30}
    probed = facts["probed steady cycle (Daemon.cycle())"]
    assert probed == {"probed": 10, "ok": 10, "first_error": [], "steps": 0}  # every server healthy, no step
    applied = facts["apply (reconcile_once)"]
    # Creates only: deploys and reads, nothing stopped or deleted; at least one listing per toolbox.
    assert [k for k in applied["routes"] if not k.startswith("GET ")] == ["POST /tools"]
    assert applied["calls"] >= applied["deploys"] + 4
    for r in rows:
        if r["scenario"] == "core diff + plan":
            assert r["facts"] == {"steps": 0, "errors": 0}
        if r["scenario"].startswith("steady state ("):
            assert r["facts"]["changing_calls"] == 0 and r["facts"]["listings"] > 0
    scale = [r for r in rows if r["size"].startswith("30 x 2 = 60 servers")]
    assert [r["scenario"] for r in scale] == [
        "observe (store + listings)",
        "plan (reconciler plan, fresh process)",
        "steady state (Daemon.cycle())",
    ]
    assert scale[0]["facts"] == {"complete_listings": 30, "toolboxes": 30}
    assert scale[1]["facts"] == {"exit": 0} and scale[2]["facts"]["changing_calls"] == 0
    assert facts["start-up: reconciler --version"]["stdout"].startswith("mcp-reconciler ")
    assert facts["start-up: reconciler validate examples/"] == {
        "exit": 0,
        "stdout": "OK: 2 environments, 8 servers in 2 files",
    }
    assert data["meta"]["quick"] is True and data["meta"]["cpus"]
    assert "| scenario" in done.stdout


def test_only_other_modules_are_not_collected() -> None:
    names = sorted(p.name for p in Path(__file__).parent.glob("*.py"))
    assert [n for n in names if n.startswith("test_") or n.endswith("_test.py")] == ["test_quick.py"]
