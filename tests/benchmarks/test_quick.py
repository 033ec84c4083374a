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
        timeout=100,
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
        "baseline: list one by one",
        "apply (reconcile_once)",
        "core diff + plan",
        "start-up: reconciler --version",
        "start-up: reconciler validate examples/",
        "status page: GET /",
        "probe (MCP handshake)",
    ):
        assert expected in scenarios, scenarios
    steady = [r for r in rows if r["scenario"].startswith("steady state (")]
    assert len(steady) == 2 and len([r for r in rows if r["scenario"] == "core diff + plan"]) == 2
    for r in rows:  # every row carries its figures, whatever they are
        assert r["wall_s"] > 0 and r["cpu_s"] is not None and r["peak_mb"] > 0
        assert r["scenario"] in done.stdout
    # What the quick run measured that must hold whatever the timings.
    facts = {r["scenario"]: r["facts"] for r in rows if not r["scenario"].startswith(("core", "steady"))}
    assert facts["observe (store + listings)"] == {"complete_listings": 20, "toolboxes": 20}
    assert facts["plan (reconcile_once, no apply)"] == {"steps": 0, "errors": 0}
    assert facts["baseline: list one by one"]["listed_one_by_one"] == 20
    assert facts["status page: GET /"] == {"rows": 50, "incomplete_first": True, "api_environments": 100}
    assert facts["probe (MCP handshake)"] == {"probed": 30, "ok": 30, "first_error": []}
    applied = facts["apply (reconcile_once)"]
    assert applied["outcome"] == "converged" and applied["deploys"] == applied["creates"] == 12
    # Creates only: deploys and reads, nothing stopped or deleted; at least one listing per toolbox.
    assert [k for k in applied["routes"] if not k.startswith("GET ")] == ["POST /tools"]
    assert applied["calls"] >= applied["deploys"] + 4
    for r in rows:
        if r["scenario"] == "core diff + plan":
            assert r["facts"] == {"steps": 0, "errors": 0}
        if r["scenario"].startswith("steady state ("):
            assert r["facts"]["changing_calls"] == 0 and r["facts"]["listings"] > 0
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
