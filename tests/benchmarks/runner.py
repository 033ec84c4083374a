"""``python -m tests.benchmarks``: run the scenarios of docs/architecture.md, print one table, write JSON.

python -m tests.benchmarks                     # the full sizes of the targets
python -m tests.benchmarks --quick             # small sizes, a few seconds (the normal suite runs this)
python -m tests.benchmarks --only observe      # one scenario: observe, apply, deploys, core, steady, scale,
                                               # startup, page, probe, probed (repeatable)
python -m tests.benchmarks --compare OLD.json  # deltas against an earlier run
python -m tests.benchmarks --sim inprocess     # simulators in the worker process (disturbs CPU figures)
python -m tests.benchmarks --sim-processes 1   # all simulated toolboxes in one process (default: 2)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "latest.json"
SCENARIOS = (
    "observe",
    "apply",
    "deploys",
    "core",
    "steady",
    "scale",
    "replicas",
    "startup",
    "page",
    "probe",
    "probed",
)
WORKER_TIMEOUT = 1800.0


def jobs(quick: bool, sim: str, sim_processes: int = 2) -> list[dict[str, Any]]:
    """Each job runs in its own worker process; hosts differ so simulators never collide."""
    if quick:
        out: list[dict[str, Any]] = [
            {
                "kind": "observe",
                "toolboxes": 20,
                "servers": 3,
                "latency": 0.005,
                "repeats": 1,
                "baseline_max_s": 30,
                "postgres": True,
            },
            {"kind": "apply", "toolboxes": 4, "servers": 3, "latency": 0.005, "postgres": True},
            {"kind": "deploys", "toolboxes": 3, "servers": 4, "latency": 0.005, "pull_delay": 0.05,
             "apply_concurrency": 3},
            {"kind": "core", "servers": 1_000, "per_env": 100, "cpu_limit": 0.02, "mb_limit": 500},
            {"kind": "core", "servers": 10_000, "per_env": 100, "cpu_limit": 0.2, "mb_limit": 500},
            {"kind": "steady", "toolboxes": 4, "servers": 5, "latency": 0.005, "cycles": 1},
            {"kind": "steady", "toolboxes": 10, "servers": 2, "latency": 0.005, "cycles": 1},
            {"kind": "scale", "toolboxes": 30, "servers": 2, "latency": 0.005, "repeats": 1, "cycles": 1,
             "mb_limit": 500},
            {"kind": "startup", "repeats": 3},
            {"kind": "page", "toolboxes": 100, "servers": 10, "runs": 50, "repeats": 1, "limit_s": 1.0},
            {"kind": "probe", "toolboxes": 10, "servers": 3, "latency": 0.005, "concurrency": 8},
            {"kind": "probed", "toolboxes": 5, "servers": 2, "latency": 0.005, "concurrency": 8},
        ]  # fmt: skip
    else:
        out = [
            {
                "kind": "observe",
                "toolboxes": 1000,
                "servers": 10,
                "latency": 0.020,
                "repeats": 3,
                "baseline_max_s": 30,
                "postgres": True,
            },
            {"kind": "apply", "toolboxes": 100, "servers": 10, "latency": 0.050, "postgres": True},
            # Real deploys: each POST /tools answers after a 2 s pull; every toolbox applied at once.
            {"kind": "deploys", "toolboxes": 100, "servers": 10, "latency": 0.020, "pull_delay": 2.0,
             "apply_concurrency": 100},
            {"kind": "core", "servers": 10_000, "per_env": 100, "cpu_limit": 0.2, "mb_limit": 500},
            {"kind": "core", "servers": 100_000, "per_env": 100, "cpu_limit": 2.0, "mb_limit": 500},
            {"kind": "steady", "toolboxes": 100, "servers": 100, "latency": 0.020, "cycles": 3},
            {"kind": "steady", "toolboxes": 1000, "servers": 10, "latency": 0.020, "cycles": 3},
            {"kind": "scale", "toolboxes": 10_000, "servers": 10, "latency": 0.020, "repeats": 1, "cycles": 2,
             "mb_limit": 500},
            *(
                [{"kind": "replicas", "toolboxes": 3000, "replicas": 3, "latency": 0.020}]
                if (Path(__file__).parent / "replicas.py").exists()
                else []
            ),
            {"kind": "startup", "repeats": 21},
            {"kind": "page", "toolboxes": 1000, "servers": 10, "runs": 200, "repeats": 5, "limit_s": 1.0},
            {"kind": "probe", "toolboxes": 1000, "servers": 10, "latency": 0.020, "concurrency": 64},
            {"kind": "probed", "toolboxes": 1000, "servers": 10, "latency": 0.020, "concurrency": 64},
        ]  # fmt: skip
    for i, job in enumerate(out):
        job["sim"] = sim
        # Quick runs check correctness only: one simulator process per job saves a process start per job.
        job["sim_processes"] = 1 if quick else sim_processes
        job["host"] = f"127.{240 + i}.0.1"  # toolbox k of job i listens on 127.(240+i).0.1 + k
    return out


def run_job(job: dict[str, Any]) -> list[dict[str, Any]]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "tests.benchmarks.worker", json.dumps(job)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=WORKER_TIMEOUT,
        check=False,
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        print(f"benchmark job {job['kind']} failed (exit {done.returncode}):\n{tail}", file=sys.stderr)
        return [{"scenario": job["kind"], "size": "", "error": f"exit {done.returncode}", "met": None}]
    rows: list[dict[str, Any]] = json.loads(lines[-1])
    for r in rows:
        r["job"] = job
        r["job_seconds"] = round(time.monotonic() - started, 2)
    return rows


def _fmt(value: Any, unit: str = "", digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}{unit}"
    return f"{value}{unit}"


COLUMNS = ("scenario", "size", "wall", "bound", "ratio", "CPU", "peak RSS", "target", "met")


def table(rows: list[dict[str, Any]]) -> str:
    body = []
    for r in rows:
        if "error" in r:
            body.append((r["scenario"], r["size"], "ERROR", "", "", "", "", r["error"], "no"))
            continue
        met = "-" if r["met"] is None else ("yes" if r["met"] else "no")
        body.append(
            (
                r["scenario"],
                r["size"],
                _fmt(r["wall_s"], " s"),
                _fmt(r["bound_s"], " s"),
                _fmt(r["ratio"], "x", 2),
                _fmt(r["cpu_s"], " s"),
                _fmt(r["peak_mb"], " MB", 0),
                r["target"],
                met,
            )
        )
    widths = [max(len(str(x)) for x in col) for col in zip(COLUMNS, *body, strict=False)]
    line = "| " + " | ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=True)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    out = [line, sep]
    out += ["| " + " | ".join(str(c).ljust(w) for c, w in zip(b, widths, strict=True)) + " |" for b in body]
    notes = [f"- {r['scenario']} ({r['size']}): {r['note']}" for r in rows if r.get("note")]
    return "\n".join([*out, "", "Notes:", *notes])


def compare(rows: list[dict[str, Any]], old_path: Path) -> str:
    old = {(r["scenario"], r["size"]): r for r in json.loads(old_path.read_text())["rows"]}
    out = [f"Compared with {old_path}:"]
    for r in rows:
        before = old.get((r["scenario"], r["size"]))
        if before is None or "error" in r or "error" in before:
            out.append(f"- {r['scenario']} ({r['size']}): no comparable earlier row")
            continue
        parts = []
        for key, label in (("wall_s", "wall"), ("cpu_s", "CPU"), ("peak_mb", "peak RSS")):
            a, b = before.get(key), r.get(key)
            if a and b is not None:
                parts.append(f"{label} {a:.3f} -> {b:.3f} ({(b - a) / a:+.0%})")
        out.append(f"- {r['scenario']} ({r['size']}): " + ", ".join(parts))
    return "\n".join(out)


def _git_commit() -> str | None:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    return done.stdout.strip() or None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.benchmarks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: the whole run takes seconds")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"results file (default {DEFAULT_JSON})")
    parser.add_argument("--only", choices=SCENARIOS, action="append", help="run only this scenario (repeatable)")
    parser.add_argument("--compare", type=Path, default=None, help="print deltas against an earlier JSON file")
    parser.add_argument(
        "--sim",
        choices=("subprocess", "inprocess"),
        default="subprocess",
        help="where the simulators run (default: their own process, so their CPU is not counted)",
    )
    parser.add_argument(
        "--sim-processes",
        type=int,
        default=2,
        help="simulator processes the toolboxes are split over (subprocess mode; default 2)",
    )
    args = parser.parse_args(argv)

    started = time.monotonic()
    load_before = os.getloadavg()
    rows: list[dict[str, Any]] = []
    for job in jobs(args.quick, args.sim, args.sim_processes):
        if args.only and job["kind"] not in args.only:
            continue
        print(f"running {job['kind']} ...", file=sys.stderr, flush=True)
        rows.extend(run_job(job))
    meta = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m tests.benchmarks " + " ".join(sys.argv[1:] if argv is None else argv),
        "quick": args.quick,
        "sim": args.sim,
        "sim_processes": args.sim_processes if args.sim == "subprocess" else 0,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": _git_commit(),
        "memory": "peak RSS of the worker process (ru_maxrss), interpreter and inputs included",
        "seconds": round(time.monotonic() - started, 1),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }
    print(table(rows))
    print(
        f"\nload average (1, 5, 15 min) before {meta['load_average_before']}, after {meta['load_average_after']}"
    )
    print(
        f"\n{meta['cpus']} CPUs, Python {meta['python']}, simulators: {args.sim}"
        + (f" x {args.sim_processes}" if args.sim == "subprocess" else "")
        + f"; memory is peak RSS (ru_maxrss) "
        f"of the worker process; total {meta['seconds']} s"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    if args.compare is not None:
        print("\n" + compare(rows, args.compare))
    return 1 if any("error" in r for r in rows) else 0
