"""One writer at a time: apply takes the environment's lock the daemon takes (an advisory lock on
PostgreSQL, a lock file beside the SQLite database); held by another process, apply waits a bounded time
and refuses naming the holder, with nothing applied."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

from reconciler.app.stores import open_store
from tests.e2e.conftest import World, server


def environment_id(w: World, name: str) -> str:
    store = open_store(w.database_url)
    try:
        return next(e.id for e in store.observe_environments() if e.name == name)
    finally:
        store.close()


def test_apply_refuses_an_environment_another_process_reconciles(world_factory: Callable[..., World]) -> None:
    w = world_factory(2)
    w.write({"tb0": [server("srv-a")], "tb1": [server("srv-b")]})
    holder = open_store(w.database_url)  # stands for a daemon or another apply, mid-cycle on tb0
    try:
        assert holder.try_lock_environment(environment_id(w, "tb0"))
        done = w.cli("apply", str(w.manifests), "--lock-wait", "0.2s")
        assert done.returncode == 1
        expected = f"environment tb0 is being reconciled by pid {os.getpid()} on host {socket.gethostname()}"
        assert expected in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
        assert w.sim.counters(0).get("POST /tools", 0) == 0 and w.sim.counters(1).get("POST /tools", 0) == 0
        # another environment is not held up by it
        assert w.cli("apply", str(w.manifests), "--env", "tb1").returncode == 0
    finally:
        holder.close()
    # once released, apply goes ahead
    done = w.cli("apply", str(w.manifests), "--lock-wait", "0.2s")
    assert done.returncode == 0, done.stderr
    assert w.sim.counters(0).get("POST /tools", 0) == 1


def test_the_lock_is_free_again_after_apply(world_factory: Callable[..., World]) -> None:
    w = world_factory(1)
    w.write({"tb0": [server("srv-a")]})
    assert w.cli("apply", str(w.manifests)).returncode == 0
    other = open_store(w.database_url)
    try:
        env = environment_id(w, "tb0")
        assert other.try_lock_environment(env)
        other.unlock_environment(env)
    finally:
        other.close()
