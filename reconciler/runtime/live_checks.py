"""Small questions the executor asks the agent right before it acts: is the container listed, is it gone."""

from __future__ import annotations

from contextlib import suppress

from reconciler.core.observed import LiveContainer, LiveListing
from reconciler.errors import DtmaAlreadyStoppedError
from reconciler.ports import Dtma, DtmaTarget


def gone(listing: LiveListing, name: str) -> bool:
    """The older agent's ``not_found`` entry: the container is gone, by the agent's own word. The planner reads
    it the same way (absent)."""
    return any(c.name == name and c.state == "not_found" for c in listing.containers)


def live(dtma: Dtma, target: DtmaTarget, name: str) -> LiveContainer | None:
    listing = dtma.list(target)
    return None if gone(listing, name) else listing.by_name().get(name)


def stop_quietly(dtma: Dtma, target: DtmaTarget, name: str) -> None:
    # Docker's 304: the container was not running, which is what a stop wants.
    with suppress(DtmaAlreadyStoppedError):
        dtma.stop(target, name)
