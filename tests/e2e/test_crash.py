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

from tests.e2e.conftest import World, all_containers, server, steps_of

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
        before = w.sim.counters().get("POST /tools", 0)
        answered_before = w.sim.sim.answers()
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
        # Every POST the agent read has its answer (a killed apply's POST may still be on its way through).
        _wait_for("every POST /tools to be answered", lambda: _posts_settled(w))
        posts = w.sim.counters().get("POST /tools", 0) - before
        answered = {k: v - answered_before.get(k, 0) for k, v in w.sim.sim.answers().items()}
        created = answered.get("POST /tools 201", 0)
        assert created == 2 * SERVERS, f"trial {trial}: {created} containers created for {2 * SERVERS} servers"
        # A POST the killed apply had in flight may reach the agent after the next apply listed: one of the
        # two is refused with 409 (the name is taken) and creates nothing. Each toolbox's chain has at most
        # one POST in flight when killed, so at most one such refusal per toolbox.
        refused = answered.get("POST /tools 409", 0)
        assert posts == created + refused and refused <= len(w.names), f"trial {trial}: {answered}"
        runs = json.loads(w.cli("journal", "--format", "json", "--run", str(last + 1)).stdout)
        steps = runs[0]["steps"] if runs else []
        assert all(s["outcome"] in ("ok", "failed", "skipped", "interrupted") for s in steps)
        interrupted_total += sum(s["outcome"] == "interrupted" for s in steps)
    assert interrupted_total > 0


def _posts_settled(w: World) -> bool:
    answers = w.sim.sim.answers()
    answered = sum(v for k, v in answers.items() if k.startswith("POST /tools ") and k != "POST /tools incomplete")
    return answered == w.sim.counters().get("POST /tools", 0)


def _wait_for(what: str, cond: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)  # polling a real process's effect on the simulator, with a deadline


@pytest.mark.parametrize("world_factory", ["sqlite"], indirect=True)
def test_a_killed_applys_post_landing_after_the_next_apply_listed_creates_one_container(
    world_factory: Callable[..., World],
) -> None:
    """The interleaving behind the crash test's "23 creates for 22 servers", forced: apply #1 is killed with
    its POST /tools held by the agent; apply #2 lists (absent), plans a create and sends its own POST; then
    both POSTs go through. One is answered 201, the other 409, and apply #2 converges on the one container
    (whichever POST won, it carries the row's instance id)."""
    w = world_factory(1)
    w.write({"tb0": [server("s0")]})
    w.sim.sim.set_faults(0, hang=True, hang_routes=["POST /tools"], hang_max=20)
    posts = lambda: w.sim.counters(0).get("POST /tools", 0)  # noqa: E731
    first = w.popen("apply", str(w.manifests))
    _wait_for("apply #1 to send its POST", lambda: posts() == 1)
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=10)
    assert all_containers(w, 0) == {}  # the killed apply's POST is still held: nothing listed yet
    second = w.popen("apply", str(w.manifests))
    _wait_for("apply #2 to send its POST", lambda: posts() == 2)
    w.sim.sim.set_faults(0, hang=False)  # both held POSTs now reach the agent
    _, err = second.communicate(timeout=30)
    assert second.returncode == 0, err
    _wait_for("both POSTs to be answered", lambda: _posts_settled(w))
    assert {k: v for k, v in w.sim.sim.answers(0).items() if k.startswith("POST /tools ")} == {
        "POST /tools 201": 1,
        "POST /tools 409": 1,
    }
    [(name, container)] = all_containers(w, 0).items()
    assert (name, container["state"], container["managed"]) == ("s0", "running", True)
    [status] = json.loads(w.cli("status", "--format", "json").stdout)
    assert (status["server"], status["recorded"], status["live"]) == ("s0", "running", "running")
    assert status["last_step"].startswith("create ok ")
    assert not steps_of(w.plan_json())  # converged: nothing left to do
    runs = sorted(json.loads(w.cli("journal", "--format", "json").stdout), key=lambda r: r["id"])
    applies = [
        [(s["server"], s["action"], s["outcome"]) for s in r["steps"]] for r in runs if r["kind"] == "apply"
    ]
    assert applies == [[("s0", "create", "interrupted")], [("s0", "create", "ok")]]
