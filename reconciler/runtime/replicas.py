"""A daemon replica's part of the environments, when several share one PostgreSQL database (``core.leases``
decides; the store reads and writes the heartbeat and lease rows). Called by the cycle before it chooses."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import timedelta

from reconciler.core.leases import live, share, taken_over
from reconciler.ports import Clock, Store

# A lease (and a heartbeat) lasts 1.25 intervals: a live replica renews it between cycles (``keep``, every
# KEEP_FRACTION of an interval) and at every cycle (at most 1.1 intervals apart with the default jitter); a
# dead replica's leases expire at most 1.25 intervals after it stopped, the others' keepers see that within a
# quarter interval and start a cycle: its environments move within two intervals, cycle time included.
LEASE_INTERVALS = 1.25
KEEP_FRACTION = 0.25
FORGET_AFTER = 10  # a heartbeat row older than this many lease periods is deleted (restarts make new ids)


@dataclass(frozen=True)
class ReplicaShare:
    """A daemon replica: its id (unique per process) and how long its leases last (two intervals)."""

    replica: str
    lease_seconds: float


@dataclass(frozen=True)
class Owned:
    environments: frozenset[str]  # the environment ids this replica reconciles this cycle
    live: int  # live replicas, this one included


def take_share(store: Store, clock: Clock, share_of: ReplicaShare, environment_ids: Collection[str]) -> Owned:
    """Beat, read the leases, hand over what is now another replica's, claim (or renew) this replica's part.
    Raises StoreError."""
    now = clock.now()
    ttl = share_of.lease_seconds
    beats = store.beat(share_of.replica, now, forget_before=now - timedelta(seconds=ttl * FORGET_AFTER))
    replicas = live(beats, now, ttl)
    leases = {lease.environment_id: lease for lease in store.leases()}
    decided = share(share_of.replica, environment_ids, leases, replicas, now)
    if decided.release:
        store.release_leases(share_of.replica, decided.release)
    owned: frozenset[str] = frozenset()
    if decided.claim:
        owned = store.claim_leases(share_of.replica, decided.claim, now, now + timedelta(seconds=ttl))
    return Owned(owned, len({*replicas, share_of.replica}))


def keep(store: Store, clock: Clock, share_of: ReplicaShare) -> bool:
    """Between cycles: beat and renew this replica's valid leases; True when a lease has just expired (a
    replica died: a cycle now takes its environments over). Raises StoreError."""
    now = clock.now()
    ttl = share_of.lease_seconds
    store.beat(share_of.replica, now, forget_before=now - timedelta(seconds=ttl * FORGET_AFTER))
    store.renew_leases(share_of.replica, now, now + timedelta(seconds=ttl))
    return taken_over(store.leases(), now, ttl)
