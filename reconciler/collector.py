"""The cyclic garbage collector paused while a bulk of objects that are kept is built: the instance rows of
an observation (``store_rows``) and its listings (``dtma_client``), the manifests (``model/loader``), and a
daemon's whole cycle (``app/daemon``). One pause for the whole process: the collector is a process-wide
setting, and these overlap (a cycle loads, reads rows and lists at once on several threads).

Such a bulk is made of objects that live on, or that reference counting frees (a listing's JSON): the
collections its allocations trigger find nothing, and each one walks every object young enough, or, every
few, every object the process holds. With the collector off altogether an observation of 1,000 x 10 took
about a fifth less CPU; a pause recovers part of that (what it made is still walked once as it ages), the
more the more the process holds: at 10,000 x 10, the pause over the listings saved 0.9 s of 6.8 s of CPU.
A pause lasts as long as the bulk (the listings: at most the DTMA call deadline when an
agent does not answer), may be taken by several threads at once (the store read and the listings overlap),
and the collector comes back as it was when the last one ends; garbage cycles made meanwhile, by any thread,
are collected after it.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class _Pauses:
    """How many pauses are running, and whether the collector ran before the first."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.count = 0
        self.was_enabled = False


_PAUSES = _Pauses()


@contextmanager
def collector_paused() -> Iterator[None]:
    p = _PAUSES
    with p.lock:
        if p.count == 0:
            p.was_enabled = gc.isenabled()
            gc.disable()
        p.count += 1
    try:
        yield
    finally:
        with p.lock:
            p.count -= 1
            if p.count == 0 and p.was_enabled:
                gc.enable()
