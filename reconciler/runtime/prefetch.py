"""Listings started before the manifests are loaded: ``plan`` overlaps the agents' answers with loading.

The listings wait on the network while loading the manifests is CPU, so ``plan`` starts listing the toolboxes
the manifests most likely declare (``model.loader.environment_hints``) as soon as the environment rows are
read, then loads. ``PrefetchingDtma`` wraps the DTMA port: the cycle's ``list_many`` takes the listings it
already has for the same target (environment, address and token) and lists only the others, so a hint that
was wrong costs one unused listing and nothing else. Only for a run that takes no lock before observing
(``plan``): an ``apply`` must list after it holds its environments' locks.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from reconciler.core.observed import LiveListing, RecordedEnvironment
from reconciler.model.loader import environment_key
from reconciler.ports import DeployRequest, DeployResult, Dtma, DtmaTarget
from reconciler.runtime.observe import target_for
from reconciler.settings import Settings

Listings = Mapping[str, LiveListing | Exception]


def likely_targets(
    rows: Sequence[RecordedEnvironment], hints: Collection[str], settings: Settings
) -> list[DtmaTarget]:
    """The reachable toolboxes among ``rows`` that a hint names (by name, or by id in any case)."""
    wanted = {environment_key(h) for h in hints}
    out: list[DtmaTarget] = []
    for row in rows:
        if (row.name in wanted or environment_key(row.id) in wanted) and isinstance(
            target := target_for(row, settings), DtmaTarget
        ):
            out.append(target)
    return out


class PrefetchingDtma:
    """The DTMA port, with one batch of listings started ahead of the cycle (used once, then forgotten)."""

    def __init__(self, dtma: Dtma) -> None:
        self._dtma = dtma
        self._pool: ThreadPoolExecutor | None = None
        self._ahead: tuple[frozenset[DtmaTarget], Future[Listings]] | None = None

    def prefetch(self, targets: Sequence[DtmaTarget]) -> None:
        if not targets:
            return
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch-listings")
        self._ahead = (frozenset(targets), self._pool.submit(self._dtma.list_many, list(targets)))

    def list_many(self, targets: Sequence[DtmaTarget]) -> Listings:
        ahead, self._ahead = self._ahead, None
        if ahead is None:
            return self._dtma.list_many(targets)
        started, future = ahead
        rest = [t for t in targets if t not in started]
        fresh = self._dtma.list_many(rest) if rest else {}
        early = future.result()
        out: dict[str, LiveListing | Exception] = {}
        for t in targets:
            source = early if t in started else fresh
            if t.environment_id in source:
                out[t.environment_id] = source[t.environment_id]
        return out

    def list(self, target: DtmaTarget) -> LiveListing:
        return self._dtma.list(target)

    def deploy(self, target: DtmaTarget, request: DeployRequest) -> DeployResult:
        return self._dtma.deploy(target, request)

    def start(self, target: DtmaTarget, name: str) -> None:
        self._dtma.start(target, name)

    def stop(self, target: DtmaTarget, name: str) -> None:
        self._dtma.stop(target, name)

    def delete(self, target: DtmaTarget, name: str) -> None:
        self._dtma.delete(target, name)

    def health(self, target: DtmaTarget) -> bool:
        return self._dtma.health(target)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self._dtma.close()
