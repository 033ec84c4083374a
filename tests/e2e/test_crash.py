"""kill -9 of apply at random points: the next apply converges, nothing is created twice, and the journal
shows the interrupted steps."""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import World, all_containers, require_every_part, server

require_every_part()

SERVERS = 11  # per toolbox; two toolboxes: 22 steps per plan
# Every trial after the first replaces every server (a new image tag), which the guard counts.
MASS = ("--allow-mass-delete", "crash test: new image on every server")
TRIALS = 20


def _intents(journal: Path, after_run: int) -> int:
    if not journal.exists():
        return 0
    conn = sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=5)
    try:
        return int(conn.execute("SELECT count(*) FROM steps WHERE run_id > ?", [after_run]).fetchone()[0])
    except sqlite3.OperationalError:
        return 0  # tables not made yet
    finally:
        conn.close()


def _last_run(journal: Path) -> int:
    if not journal.exists():
        return 0
    conn = sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=5)
    try:
        return int(conn.execute("SELECT coalesce(max(id), 0) FROM runs").fetchone()[0])
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


@pytest.mark.slow
# SQLite only: the PostgreSQL store's writes are covered by the lifecycle test, and this one is the slowest.
@pytest.mark.parametrize("world_factory", ["sqlite"], indirect=True)
def test_kill_minus_nine_at_random_points(
    world_factory: Callable[..., World],
) -> None:
    w = world_factory(2, faults={"latency": 0.002})
    journal = w.tmp / "journal.db"
    rng = random.Random(20260124)
    interrupted_total = 0
    for trial in range(TRIALS):
        version = f"{trial + 1}.0.0"
        w.write({name: [server(f"s{i}", image=f"ghcr.io/acme/s{i}:{version}") for i in range(SERVERS)]
                 for name in w.names})  # fmt: skip
        before = sum(w.sim.counters(i).get("POST /tools", 0) for i in range(2))
        last = _last_run(journal)
        kill_after = rng.randint(1, 2 * SERVERS - 1)
        proc = w.popen("apply", str(w.manifests), *MASS)
        deadline = time.monotonic() + 20
        while _intents(journal, last) < kill_after and proc.poll() is None:
            assert time.monotonic() < deadline, "apply made no progress"
            time.sleep(0.002)  # polling the journal file of a real process, with a deadline
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=10)
        done = w.cli("apply", str(w.manifests), *MASS)
        assert done.returncode == 0, f"trial {trial}: {done.stderr}"
        for i in range(2):
            managed = {n: c for n, c in all_containers(w, i).items() if c["managed"]}
            assert {n: (c["state"], c["image"]) for n, c in managed.items()} == {
                f"s{k}": ("running", f"ghcr.io/acme/s{k}:{version}") for k in range(SERVERS)
            }, f"trial {trial}"
        created = sum(w.sim.counters(i).get("POST /tools", 0) for i in range(2)) - before
        assert created == 2 * SERVERS, f"trial {trial}: {created} creates for {2 * SERVERS} servers"
        runs = json.loads(w.cli("journal", "--format", "json", "--run", str(last + 1)).stdout)
        steps = runs[0]["steps"] if runs else []
        assert all(s["outcome"] in ("ok", "failed", "skipped", "interrupted") for s in steps)
        interrupted_total += sum(s["outcome"] == "interrupted" for s in steps)
    assert interrupted_total > 0
