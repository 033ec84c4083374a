"""Who reconciles what when several daemon replicas share one PostgreSQL database.

Each replica beats a heartbeat row every cycle; each environment is owned by one replica through a lease row
(owner, expiry) renewed every cycle. Which replica should own an environment is decided here, the same way
by every replica from the same rows: rendezvous (highest random weight) hashing of environment ids over the
live replica ids, with a bound of ceil(environments / live replicas) per replica, so the spread is even; an
environment stays with its current owner while that owner is live and under the bound, so a replica joining
or leaving moves only what it must (the survivors keep theirs and split the dead replica's). A replica
claims the environments assigned to it that are unowned, expired or its own, waits for a live owner to hand
over the others, and releases those it owns but is no longer assigned. A replica that stops beating is no
longer live after ``ttl``; its leases expire after the same time, so its environments are taken over at the
first cycle after that.

Pure: the rows and the time come in as arguments; the stores read and write them (the mutual exclusion of
a step stays with the advisory locks, which ``apply`` takes too).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class Heartbeat:
    """A replica's row: who it is and when it last finished choosing its environments."""

    replica: str
    last_seen: datetime


@dataclass(frozen=True)
class Lease:
    environment_id: str
    owner: str  # a replica id
    expires_at: datetime

    def valid(self, now: datetime) -> bool:
        return self.expires_at > now


@dataclass(frozen=True)
class Share:
    """What one replica does with the leases this cycle."""

    claim: frozenset[str]  # assigned to it and free, expired or its own: claim (or renew) them
    release: frozenset[str]  # it holds them but they are assigned to another live replica: hand them over
    waiting: frozenset[str]  # assigned to it, still held by another replica's valid lease


def live(heartbeats: Iterable[Heartbeat], now: datetime, ttl: float) -> tuple[str, ...]:
    """The replicas seen within ``ttl`` seconds of ``now``, sorted."""
    since = now - timedelta(seconds=ttl)
    return tuple(sorted({h.replica for h in heartbeats if h.last_seen > since}))


def _weight(environment_id: str, replica: str) -> int:
    digest = hashlib.blake2b(f"{environment_id}\x00{replica}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def assignment(
    environment_ids: Collection[str], replicas: Sequence[str], current: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Environment id -> the replica that should own it, at most ceil(environments / replicas) each.

    An environment stays with its ``current`` owner (environment id -> replica holding a valid lease) while
    that owner is live and under the bound, so a replica leaving or joining moves only what it must; the
    others go to their highest-weight replica under the bound. Environments are taken in id order, so every
    replica computes the same answer from the same rows."""
    if not replicas:
        return {}
    cap = math.ceil(len(environment_ids) / len(replicas))
    load = dict.fromkeys(replicas, 0)
    out: dict[str, str] = {}
    ordered = sorted(environment_ids)
    for env in ordered:
        owner = (current or {}).get(env)
        if owner in load and load[owner] < cap:
            out[env] = owner
            load[owner] += 1
    for env in ordered:
        if env in out:
            continue
        for replica in sorted(replicas, key=lambda r: (-_weight(env, r), r)):
            if load[replica] < cap:
                out[env] = replica
                load[replica] += 1
                break
    return out


def share(
    me: str,
    environment_ids: Collection[str],
    leases: Mapping[str, Lease],
    replicas: Sequence[str],
    now: datetime,
) -> Share:
    """``me``'s part of ``environment_ids`` given the live ``replicas`` (``me`` counts as live: it has just
    beaten) and the current ``leases`` (environment id -> lease)."""
    current = {env: lease.owner for env, lease in leases.items() if lease.valid(now)}
    target = assignment(environment_ids, sorted({*replicas, me}), current)
    claim: set[str] = set()
    release: set[str] = set()
    waiting: set[str] = set()
    for env in environment_ids:
        lease = leases.get(env)
        held_by_other = lease is not None and lease.valid(now) and lease.owner != me
        if target.get(env) == me:
            (waiting if held_by_other else claim).add(env)
        elif lease is not None and lease.owner == me and lease.valid(now):
            release.add(env)
    return Share(frozenset(claim), frozenset(release), frozenset(waiting))


def taken_over(leases: Iterable[Lease], now: datetime, ttl: float) -> bool:
    """Whether some environment is up for taking over: its lease expired within the last ``ttl`` seconds (its
    owner stopped renewing it; an older one is an environment no longer declared, left to lapse)."""
    since = now - timedelta(seconds=ttl)
    return any(since < lease.expires_at <= now for lease in leases)
