"""Which recorded instances' ``last_heartbeat_from_dtma`` a cycle writes: those an agent has just listed whose
stamp, as read at the start of the cycle, is missing or older than the interval.

The store's UPDATE applies the same condition; asking it here first, on the rows the cycle has already read,
lets a converged cycle whose rows were all beaten within the interval send no statement at all (at 10,000
toolboxes x 10 the UPDATE found nothing to write on two cycles of three yet cost a quarter of a second). A
stamp only moves forward, so a row fresh when read is still fresh when the store would have looked.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from reconciler.core.observed import Observed
from reconciler.runtime.observe import listed_instance_ids

HEARTBEAT_INTERVAL = 60.0  # seconds: a row beaten less than this long ago is not written again


def due_heartbeats(observed: Observed, at: datetime, min_interval: float = HEARTBEAT_INTERVAL) -> tuple[str, ...]:
    """The listed instances (``listed_instance_ids``) whose recorded stamp is missing or older than
    ``at - min_interval``, sorted."""
    cutoff = _aware(at) - timedelta(seconds=min_interval)
    due: set[str] = set()
    for row in observed.recorded.instances:
        beat = row.last_heartbeat_from_dtma
        if beat is None or _aware(beat) < cutoff:
            due.add(row.id)
    if not due:
        return ()
    return tuple(i for i in listed_instance_ids(observed) if i in due)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
