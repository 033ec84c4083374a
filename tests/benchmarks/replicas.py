"""Daemon replicas sharing the work: three replicas on the real PostgreSQL server over 3,000 simulated
toolboxes (issue: "replicas must split the work").

    python -m tests.benchmarks.replicas [--toolboxes 3000] [--replicas 3] [--latency 0.02] [--json PATH]

Each replica is a real ``Daemon`` (its own store, DTMA client and journal) driven interval by interval with
one clock on which interval k starts k intervals after the first (``IntervalClock``), so the lease times are
those of a real deployment without waiting 30 s per interval. Prints, per interval: how many toolboxes
each replica listed, the spread against an even split, how many times each toolbox was listed (the
simulators' counters), the CPU per replica cycle; then the take-over time after one replica is killed (no
clean stop: its leases must expire).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from reconciler.model.secrets import Secret
from reconciler.runtime.replicas import KEEP_FRACTION
from reconciler.settings import Settings
from tests.benchmarks.fleet import TOKEN, Fleet, SimFleet, _seed, server_doc
from tests.benchmarks.worker import LISTING_ROUTES, Measured, measure, row

INTERVAL = 30.0
PG_ADMIN_URL = os.environ.get("RECONCILER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


class IntervalClock:
    """Interval k starts at exactly k intervals after the start, whatever the benchmark spent between
    intervals (reading 3,000 counters takes a while); within an interval time runs as it really does, so the
    replicas' cycles take their real time and the leases expire as they would in a deployment."""

    def __init__(self) -> None:
        self._base = datetime.now(UTC)
        self._logical = 0.0  # seconds from the start to the current interval's start
        self._real = time.monotonic()  # when the current interval started, in real time

    def monotonic(self) -> float:
        return self._logical + time.monotonic() - self._real

    def now(self) -> datetime:
        return self._base + timedelta(seconds=self.monotonic())

    def advance(self, seconds: float) -> None:
        """The next interval starts ``seconds`` after the current one started."""
        self._logical += seconds
        self._real = time.monotonic()


def _database() -> tuple[str, str]:
    import psycopg

    name = f"rbench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name, f"{PG_ADMIN_URL.rpartition('/')[0]}/{name}"


def _drop(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _fleet(work: Path, sim: SimFleet, url: str) -> Fleet:
    """The toolboxes registered in PostgreSQL, one manifest each with one server, already converged."""
    from reconciler.app.stores import migrate_database, open_store

    migrate_database(url)
    settings = Settings(
        database_url=url,
        journal_path=str(work / "journal.db"),
        dtma_port=sim.port,
        dtma_token=Secret(TOKEN),
        secret_key=Secret("bench-hmac-key"),
    )
    manifests = work / "manifests"
    manifests.mkdir()
    names = [f"tb{i:04d}" for i in range(sim.toolboxes)]
    fleet = Fleet(work, sim, settings, manifests, names)
    store = open_store(url)
    try:
        for i, name in enumerate(names):
            fleet.environment_ids[name] = store.add_environment(name, sim.ip(i)).id
            doc = {"apiVersion": "mcp-reconciler/v1", "kind": "Toolbox", "environment": name,
                   "servers": [server_doc(0)]}  # fmt: skip
            (manifests / f"{name}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
        _seed(fleet, store)
    finally:
        store.close()
    return fleet


def _listings(sim: SimFleet) -> list[int]:
    return [sum(v for k, v in c.items() if k in LISTING_ROUTES) for c in sim.counters()]


def run(toolboxes: int, replicas: int, latency: float, host: str = "127.230.0.1") -> dict[str, Any]:
    from reconciler.app.daemon import Daemon, DaemonConfig
    from reconciler.runtime.execute import ExecutorConfig

    db_name, url = _database()
    work = Path(tempfile.mkdtemp(prefix="reconciler-replicas-"))
    sim = SimFleet(toolboxes, latency=latency, host=host, mode="subprocess", processes=2)
    daemons: list[Daemon] = []
    try:
        sim.start(work)
        fleet = _fleet(work, sim, url)
        clock = IntervalClock()
        config = DaemonConfig(paths=tuple(fleet.paths), interval=INTERVAL)
        for i in range(replicas):
            settings = fleet.settings.with_overrides(journal_path=str(work / f"journal-{i}.db"))
            daemons.append(Daemon(settings, config, environ={}, clock=clock, executor_config=ExecutorConfig()))
        intervals: list[dict[str, Any]] = []
        last_cycle_at: dict[int, float] = {}  # clock time of each replica's last cycle (its heartbeat, renewal)
        last_acted: dict[int, set[str]] = {}

        def interval(alive: list[int], *, count_listings: bool = False) -> dict[str, Any]:
            before = _listings(sim) if count_listings else None
            listed: dict[int, int] = {}
            cpu: dict[int, Measured] = {}
            covered: set[str] = set()
            for i in alive:
                last_cycle_at[i] = clock.monotonic()
                m, report = measure(daemons[i].cycle)
                last_acted[i] = set(report.acted_on)
                if not report.database_ok or report.results:
                    raise RuntimeError(f"replica {i}: {report.errors} {len(report.results)} step(s)")
                listed[i], cpu[i] = len(report.acted_on), m
                covered |= set(report.acted_on)
            clock.advance(INTERVAL)
            out: dict[str, Any] = {"alive": alive, "listed": listed, "covered": len(covered),
                                   "cpu": {i: round(m.cpu, 3) for i, m in cpu.items()},
                                   "wall": {i: round(m.wall, 3) for i, m in cpu.items()}}  # fmt: skip
            if before is not None:
                after = _listings(sim)
                per_toolbox = [a - b for a, b in zip(after, before, strict=True)]
                out["listings_per_toolbox"] = {str(k): per_toolbox.count(k) for k in sorted(set(per_toolbox))}
            intervals.append(out)
            return out

        everyone = list(range(replicas))
        interval(everyone)  # the first replica up takes every toolbox; the others wait for it to hand over
        interval(everyone)  # it hands over: from here on each toolbox has one owner
        steady = [interval(everyone, count_listings=True) for _ in range(2)]
        even = toolboxes / replicas
        spread = max(max(s["listed"].values()) for s in steady) / even
        # The last replica dies right after its cycle (no clean stop: its leases must lapse). The survivors go
        # on as daemons do: a cycle every interval, their lease keeper every quarter interval (a cycle at once
        # when a lease lapsed). Take-over: from the dead replica's last heartbeat to the moment every one of
        # its toolboxes was covered by a survivor.
        killed = replicas - 1
        survivors = everyone[:killed]
        dead_envs, t_dead = last_acted[killed], last_cycle_at[killed]
        taken: set[str] = set()
        takeover_s = sequential_s = None
        keeper_cycles = 0
        for q in range(16):
            step_start, walls = clock.monotonic(), []
            for i in survivors:
                if q % 4 == 0 or daemons[i].keep_share():
                    keeper_cycles += q % 4 != 0
                    m, report = measure(daemons[i].cycle)
                    walls.append(m.wall)
                    taken |= set(report.acted_on) & dead_envs
            if taken == dead_envs:
                # Here the survivors' cycles ran one after the other on one machine; replicas on their own
                # hosts run them side by side: the take-over ends with the longest of them.
                takeover_s = step_start - t_dead + max(walls)
                sequential_s = clock.monotonic() - t_dead
                break
            clock.advance(INTERVAL * KEEP_FRACTION)
        takeover = None if takeover_s is None else takeover_s / INTERVAL
        cpu = [c for s in steady for c in s["cpu"].values()]
        return {
            "toolboxes": toolboxes,
            "replicas": replicas,
            "latency_ms": latency * 1000,
            "interval_s": INTERVAL,
            "intervals": intervals,
            "steady_listed_per_replica": [steady[-1]["listed"][i] for i in everyone],
            "steady_listings_per_toolbox": steady[-1].get("listings_per_toolbox"),
            "spread_vs_even": round(spread, 3),
            "takeover_intervals": None if takeover is None else round(takeover, 2),
            "takeover_seconds": None if takeover_s is None else round(takeover_s, 1),
            "takeover_keeper_cycles": keeper_cycles,
            "takeover_sequential_seconds": None if sequential_s is None else round(sequential_s, 1),
            "cpu_per_replica_cycle_s": round(statistics.mean(cpu), 3),
            "cpu_share_per_replica": round(statistics.mean(cpu) / INTERVAL, 4),
        }
    finally:
        for d in daemons:
            d.close()
        sim.stop()
        _drop(db_name)


def rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The result as rows of the benchmark table (tests/benchmarks/runner.py)."""
    n, k = result["toolboxes"], result["replicas"]
    size = f"{k} replicas x {n:,} toolboxes (PostgreSQL)"
    listed = result["steady_listed_per_replica"]
    per_toolbox = result["steady_listings_per_toolbox"] or {}
    once = per_toolbox == {"1": n}
    takeover = result["takeover_intervals"]
    cpu = result["cpu_per_replica_cycle_s"]
    return [
        row(
            "replicas: work spread",
            size,
            Measured(0.0, cpu),
            None,
            ratio=result["spread_vs_even"],
            target="max <= 1.5x even; each toolbox listed once per interval",
            met=result["spread_vs_even"] <= 1.5 and once,
            note=f"listings per replica per interval {listed} (even {n / k:.0f}); listings per toolbox per "
            f"interval {per_toolbox}; CPU per replica cycle {cpu:.3f} s",
            facts={"listed": listed, "per_toolbox": per_toolbox},
        ),
        row(
            "replicas: take-over",
            size,
            None,
            None,
            ratio=None if takeover is None else takeover / 2,
            target="<= 2 intervals",
            met=takeover is not None and takeover <= 2,
            note=f"a killed replica's {n // k} toolboxes all covered again {result['takeover_seconds']} s after "
            f"its last heartbeat ({takeover} intervals of {result['interval_s']:g} s; leases last 1.25 "
            f"intervals, keepers check every quarter; the survivors' take-over cycles side by side, "
            f"{result['takeover_sequential_seconds']} s one after the other as run here)",
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.replicas", description=__doc__)
    parser.add_argument("--toolboxes", type=int, default=3000)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--latency", type=float, default=0.020, help="simulated DTMA latency in seconds")
    parser.add_argument("--json", metavar="PATH", help="also write the result here")
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    print(f"cores {os.cpu_count()}, load average {load:.2f} at the start", file=sys.stderr)
    result = run(args.toolboxes, args.replicas, args.latency)
    result["cores"], result["load_at_start"] = os.cpu_count(), round(load, 2)
    for i, step in enumerate(result["intervals"], 1):
        extra = f"  listings per toolbox {step['listings_per_toolbox']}" if "listings_per_toolbox" in step else ""
        print(f"interval {i}: replicas {step['alive']} listed {step['listed']} (covered {step['covered']}), "
              f"CPU {step['cpu']} s{extra}")  # fmt: skip
    for r in rows(result):
        met = "met" if r["met"] else "NOT met"
        print(f"{r['scenario']}: {r['size']}: {met} ({r['target']}): {r['note']}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str))
    return 0 if all(r["met"] for r in rows(result)) else 1


if __name__ == "__main__":
    raise SystemExit(main())
