"""The heartbeats a cycle writes: asked of the rows it read first, the same rows as the store's own condition."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from reconciler.app.stores import open_store
from reconciler.core.observed import LiveContainer, LiveListing, Observed, RecordedInstance, RecordedState
from reconciler.runtime.heartbeats import HEARTBEAT_INTERVAL, due_heartbeats
from reconciler.runtime.observe import listed_instance_ids
from tests.adapters.stores.helpers import new_instance, server

T0 = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


def test_only_due_listed_rows_are_asked_for_and_the_store_writes_the_same_rows(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}", create=True)
    try:
        env = store.add_environment("tb0", "127.0.0.2").id
        names = ["never", "stale", "fresh", "edge", "unlisted"]
        ids = {}
        for n in names:
            image = f"img/{n}:1"
            ids[n] = store.create_instance(new_instance(env, store.ensure_catalog(image), server(n, image)))
        store.record_heartbeats([ids["stale"]], T0 - timedelta(seconds=600))
        store.record_heartbeats([ids["fresh"]], T0 - timedelta(seconds=10))
        # Beaten exactly the interval ago: not older than it, so neither due nor written.
        store.record_heartbeats([ids["edge"]], T0 - timedelta(seconds=HEARTBEAT_INTERVAL))
        recorded = store.observe()
        listing = LiveListing(
            env, tuple(LiveContainer(n, "running", f"img/{n}:1", ids[n]) for n in names if n != "unlisted"), "c"
        )
        observed = Observed(recorded=recorded, live={env: listing})
        due = due_heartbeats(observed, T0)
        assert due == tuple(sorted([ids["never"], ids["stale"]]))
        # The store's own condition on every listed row writes exactly those.
        assert store.record_heartbeats(listed_instance_ids(observed), T0) == len(due)
        beats = {r.id: r.last_heartbeat_from_dtma for r in store.observe().instances}
        assert {i for i, at in beats.items() if at == T0} == set(due)
        # Read again: every listed row is fresh now, nothing is due.
        assert due_heartbeats(Observed(recorded=store.observe(), live={env: listing}), T0) == ()
        later = T0 + timedelta(seconds=HEARTBEAT_INTERVAL + 1)
        assert due_heartbeats(Observed(recorded=store.observe(), live={env: listing}), later) == tuple(
            sorted(ids[n] for n in names if n != "unlisted")
        )
    finally:
        store.close()


def test_a_naive_time_is_read_as_utc() -> None:
    beat = datetime(2026, 1, 1)  # a naive stamp, as a store may hand back
    row = RecordedInstance("i1", "e", "c", "s", "running", "img", True, last_heartbeat_from_dtma=beat)
    observed = Observed(
        recorded=RecordedState((), (row,)),
        live={"e": LiveListing("e", (LiveContainer("s", "running", "img", "i1"),), "c")},
    )
    assert due_heartbeats(observed, datetime(2026, 1, 1, 0, 0, 30, tzinfo=UTC)) == ()
    assert due_heartbeats(observed, datetime(2026, 1, 1, 0, 2, tzinfo=UTC)) == ("i1",)
    assert due_heartbeats(observed, datetime(2026, 1, 1, 0, 2)) == ("i1",)
