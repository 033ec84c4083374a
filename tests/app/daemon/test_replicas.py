"""Daemon replicas on PostgreSQL share the environments by leases: after the first interval each toolbox is
listed and reconciled by exactly one replica per interval, evenly; a replica that stops beating has its
toolboxes taken over within two intervals; one that stops cleanly hands them over at once. Driven cycle by
cycle with the test clock (no sleeps)."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from tests.app.daemon.conftest import DaemonWorld, server

pytestmark = pytest.mark.postgres

INTERVAL = 30.0


def listings(w: DaemonWorld) -> list[int]:
    return [sum(v for k, v in w.sim.counters(i).items() if k.startswith("GET")) for i in range(len(w.names))]


def test_three_replicas_share_twelve_toolboxes_and_take_over_from_a_dead_one(
    pg_url: str, world_of: Callable[..., DaemonWorld]
) -> None:
    w = world_of(12, url=pg_url)
    w.write({name: [server("mcp")] for name in w.names})
    replicas = [w.daemon(journal=f"journal-{i}.db", interval=INTERVAL) for i in range(3)]

    def interval(alive: list[int]) -> tuple[list[set[str]], list[int]]:
        before = listings(w)
        covered = []
        for i in alive:
            report = replicas[i].cycle()
            assert report.database_ok and not report.errors
            covered.append(set(report.acted_on))
        w.clock.advance(INTERVAL)
        return covered, [a - b for a, b in zip(listings(w), before, strict=True)]

    interval([0, 1, 2])  # the first one up takes everything; the others wait for it to hand over
    for _ in range(2):
        covered, listed = interval([0, 1, 2])
        assert sorted(n for c in covered for n in c) == sorted(w.names)  # each toolbox by exactly one replica
        assert listed == [1] * 12  # and listed once per interval, not once per replica
        assert max(len(c) for c in covered) <= math.ceil(1.5 * 12 / 3)
    assert w.creates() == 12 and all(w.sim.counters(i).get("POST /tools") == 1 for i in range(12))
    assert replicas[0].last_report is not None and replicas[0].last_report.live_replicas == 3
    metrics = replicas[0].metrics.render().decode()
    assert "reconciler_live_replicas 3.0" in metrics and "reconciler_leased_elsewhere_environments 8.0" in metrics

    # Replica 2 dies (no clean stop): its leases hold one interval more, then the others take its toolboxes.
    dead = covered[2]
    covered, _ = interval([0, 1])
    assert not dead & (covered[0] | covered[1])
    covered, listed = interval([0, 1])
    assert covered[0] | covered[1] == set(w.names) and not covered[0] & covered[1]
    assert listed == [1] * 12 and max(len(c) for c in covered) <= 6

    # Replica 1 stops cleanly: it hands its toolboxes over at once, and replica 0 takes them all next cycle.
    replicas[1].close()
    covered, listed = interval([0])
    assert covered[0] == set(w.names) and listed == [1] * 12


def test_a_dead_replicas_lapsed_leases_start_a_cycle_on_the_others_before_their_next_interval(
    pg_url: str, world_of: Callable[..., DaemonWorld]
) -> None:
    w = world_of(6, url=pg_url)
    w.write({name: [server("mcp")] for name in w.names})
    a, b = (w.daemon(journal=f"journal-{i}.db", interval=INTERVAL) for i in range(2))
    for _ in range(2):
        a.cycle()
        b.cycle()
        w.clock.advance(INTERVAL)
    assert a.last_report is not None and b.last_report is not None
    mine, dead = set(a.last_report.acted_on), set(b.last_report.acted_on)
    assert len(mine) == len(dead) == 3
    # b is gone (no clean stop), one interval after its last cycle. a's keeper runs every quarter interval
    # between a's cycles:
    assert not a.keep_share()  # b's leases (1.25 intervals) still hold
    w.clock.advance(0.5 * INTERVAL + 1)
    assert a.keep_share()  # they lapsed: a cycle now, not at a's next interval
    taken = a.cycle()
    assert set(taken.acted_on) == mine | dead and w.creates() == 6
