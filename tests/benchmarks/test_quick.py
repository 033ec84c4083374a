"""The benchmark never rots: ``python -m tests.benchmarks --quick`` runs and reports every scenario.

Timings are never asserted here (DESIGN section 10: performance is shown by the benchmark run on purpose).
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
    ):
        assert expected in scenarios, scenarios
    steady = [r for r in rows if r["scenario"].startswith("steady state (")]
    assert len(steady) == 2 and len([r for r in rows if r["scenario"] == "core diff + plan"]) == 2
    for r in rows:  # every row carries its figures, whatever they are
        assert r["wall_s"] is not None and r["cpu_s"] is not None and r["peak_mb"] > 0
        assert r["met"] in (True, False)
        assert r["scenario"] in done.stdout
    assert data["meta"]["quick"] is True and data["meta"]["cpus"]
    assert "| scenario" in done.stdout


def test_only_other_modules_are_not_collected() -> None:
    names = sorted(p.name for p in Path(__file__).parent.glob("*.py"))
    assert [n for n in names if n.startswith("test_") or n.endswith("_test.py")] == ["test_quick.py"]
