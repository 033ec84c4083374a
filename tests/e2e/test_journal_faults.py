"""A journal that cannot be written stops `apply` before any DTMA call; once fixed, the next apply goes on."""

from __future__ import annotations

from collections.abc import Callable

from .conftest import World, server


def test_a_damaged_journal_stops_apply_before_any_agent_call(world_factory: Callable[..., World]) -> None:
    world = world_factory(toolboxes=1)
    world.write({"tb0": [server("alpha")]})
    journal = world.tmp / "journal.db"
    journal.write_bytes(b"not a journal" * 100)
    done = world.cli("apply", str(world.manifests))
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.strip().splitlines() == [
        f"error: journal {journal} is damaged (file is not a database): move it aside "
        f"(mv {journal} {journal}.damaged) and the next run starts a new journal"
    ]
    assert [k for k in world.sim.counters() if not k.startswith("GET")] == []  # nothing sent to the agent
    journal.rename(f"{journal}.damaged")  # the fix the message gives
    done = world.cli("apply", str(world.manifests))
    assert done.returncode == 0, done.stdout + done.stderr
    assert world.sim.counters().get("POST /tools", 0) == 1
