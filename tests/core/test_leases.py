"""Who owns what among daemon replicas: an even, stable assignment, claims that never take a live owner's
environment, and a dead replica's environments taken over once its leases expire (two intervals)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from reconciler.core.leases import Heartbeat, Lease, assignment, live, share, taken_over

T0 = datetime(2026, 11, 27, 14, 0, tzinfo=UTC)
ENVS = [f"env-{i:04d}" for i in range(300)]


@given(st.integers(min_value=0, max_value=400), st.integers(min_value=1, max_value=7))
def test_every_environment_has_one_owner_and_no_replica_more_than_its_even_share(n: int, k: int) -> None:
    envs = [f"e{i}" for i in range(n)]
    replicas = [f"r{j}" for j in range(k)]
    owners = assignment(envs, replicas)
    assert set(owners) == set(envs)
    loads = [sum(1 for o in owners.values() if o == r) for r in replicas]
    assert max(loads, default=0) <= math.ceil(n / k)


def test_every_replica_computes_the_same_assignment_and_only_a_leavers_environments_move() -> None:
    three = assignment(ENVS, ["a", "b", "c"])
    assert three == assignment(list(reversed(ENVS)), ["c", "a", "b"])
    survivors = {e: o for e, o in three.items() if o != "c"}
    two = assignment(ENVS, ["a", "b"], survivors)
    assert all(two[e] == o for e, o in survivors.items())  # a and b keep theirs and split c's
    joined = assignment(ENVS, ["a", "b", "c", "d"], three)
    assert sum(1 for e in ENVS if joined[e] != three[e]) == len(ENVS) // 4  # only d's share moves


def test_live_replicas_are_those_seen_within_the_ttl() -> None:
    beats = [
        Heartbeat("a", T0),
        Heartbeat("b", T0 - timedelta(seconds=59)),
        Heartbeat("c", T0 - timedelta(seconds=60)),
    ]
    assert live(beats, T0, 60) == ("a", "b")


def test_a_replica_waits_for_a_live_owner_to_hand_over_and_releases_what_is_no_longer_its() -> None:
    until = T0 + timedelta(seconds=60)
    alone = share("a", ENVS, {}, ["a"], T0)
    assert alone.claim == frozenset(ENVS)  # the first replica up takes everything
    held = {e: Lease(e, "a", until) for e in ENVS}
    b = share("b", ENVS, held, ["a", "b"], T0)
    assert not b.claim and b.waiting and not b.release  # b's half is still a's: it waits
    a = share("a", ENVS, held, ["a", "b"], T0)
    assert a.release == b.waiting and a.claim == frozenset(ENVS) - a.release
    after = {e: lease for e, lease in held.items() if e not in a.release}
    assert share("b", ENVS, after, ["a", "b"], T0).claim == b.waiting


def test_a_dead_replicas_environments_are_taken_over_when_its_leases_expire() -> None:
    interval = 30.0
    ttl = 2 * interval
    owners = assignment(ENVS, ["a", "b", "c"])
    leases = {e: Lease(e, o, T0 + timedelta(seconds=ttl)) for e, o in owners.items()}
    c_envs = {e for e, o in owners.items() if o == "c"}
    beats = [Heartbeat("a", T0), Heartbeat("b", T0), Heartbeat("c", T0)]  # c dies right after this cycle
    took: dict[float, set[str]] = {}
    for k in (1, 2):
        now = T0 + timedelta(seconds=k * interval)
        beats = [Heartbeat("a", now), Heartbeat("b", now), beats[2]]
        alive = live(beats, now, ttl)
        took[k] = set()
        for me in ("a", "b"):
            mine = share(me, ENVS, leases, alive, now)
            took[k] |= mine.claim & c_envs
            leases.update({e: Lease(e, me, now + timedelta(seconds=ttl)) for e in mine.claim})
    assert took[1] == set()  # one interval on: c's leases still hold
    assert took[2] == c_envs  # two intervals on: every one of them has a new owner


def test_only_a_lease_that_lapsed_within_the_ttl_asks_for_a_take_over() -> None:
    now = T0 + timedelta(seconds=100)
    valid = Lease("e1", "a", now + timedelta(seconds=1))
    lapsed = Lease("e2", "b", now - timedelta(seconds=10))
    forgotten = Lease("e3", "b", now - timedelta(seconds=46))  # an environment no longer declared
    assert taken_over([valid, lapsed], now, 45)
    assert not taken_over([valid, forgotten], now, 45)
