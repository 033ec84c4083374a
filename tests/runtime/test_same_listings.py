"""An equal listing is replaced by the toolbox's last one: same values, one object to compare by identity."""

from __future__ import annotations

from dataclasses import replace

from reconciler.core.observed import LiveContainer, LiveListing, Observed, RecordedState, Unreachable
from reconciler.runtime.cycle import same_listings


def listing(env: str, state: str = "running") -> LiveListing:
    return LiveListing(env, (LiveContainer("a", state, "img/a:1", "i1"), LiveContainer("b", "exited")), "c")


def test_equal_listings_become_the_last_ones_and_others_stay_as_listed() -> None:
    last = {"e0": listing("e0"), "e1": listing("e1"), "e3": listing("e3")}
    now = {"e0": listing("e0"), "e1": listing("e1", "exited"), "e2": listing("e2"), "e3": Unreachable("e3", "x")}
    observed = Observed(RecordedState((), ()), now)  # type: ignore[arg-type]
    got, kept = same_listings(observed, last)
    assert got == observed  # the same values
    assert got.live["e0"] is last["e0"]  # equal: the last object
    assert got.live["e1"] is now["e1"] and got.live["e2"] is now["e2"]  # changed, new: as listed
    assert got.live["e3"] is now["e3"]  # unreachable: as it is, and not remembered
    assert kept == {"e0": last["e0"], "e1": now["e1"], "e2": now["e2"]}
    assert all(kept[k] is got.live[k] for k in kept)
    # A field the container's equality reads (its ports, its raw state) is a change too.
    raw = replace(listing("e0"), containers=(replace(listing("e0").containers[0], raw_state="weird"),))
    again, _ = same_listings(Observed(RecordedState((), ()), {"e0": raw}), kept)
    assert again.live["e0"] is raw
