"""Observation: the recorded state from the store and, concurrently, a listing of every toolbox.

A toolbox that is not ``active``, has no address or token, or whose listing fails is ``Unreachable``:
it is skipped by the plan and never read as "no containers".
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from concurrent.futures import ThreadPoolExecutor

from reconciler.core.observed import (
    ContainerState,
    LiveContainer,
    LiveListing,
    LiveState,
    Observed,
    RecordedEnvironment,
    RecordedState,
    Unreachable,
)
from reconciler.ports import Dtma, DtmaTarget, Store
from reconciler.settings import Settings


def target_for(env: RecordedEnvironment, settings: Settings) -> DtmaTarget | Unreachable:
    """How to reach a toolbox's agent, or why it cannot be reached at all."""
    if env.status != "active":
        return Unreachable(env.id, f"environment status is {env.status}, not active")
    if not env.address:
        return Unreachable(env.id, "environment has no public IP address")
    token = settings.dtma_token
    if settings.dtma_token_source == "row" and env.dtma_token:
        token = env.dtma_token  # explicit opt-in (RECONCILER_DTMA_TOKEN_SOURCE=row)
    if not token:
        return Unreachable(env.id, "no DTMA token (set BACKEND_TO_DTMA_API_KEY)")
    host = f"[{env.address}]" if ":" in env.address else env.address
    return DtmaTarget(env.id, f"{settings.dtma_scheme}://{host}:{settings.dtma_port}", token, env.name or "")


def listed_instance_ids(observed: Observed) -> tuple[str, ...]:
    """The recorded instances whose container an agent listed in this observation (by the listing's
    instance id, else by name on the same toolbox): where ``last_heartbeat_from_dtma`` is due."""
    rows_by_env: dict[str, dict[str, str]] = {}
    known: set[str] = set()
    for row in observed.recorded.instances:
        known.add(row.id)
        if row.name:
            rows_by_env.setdefault(row.environment_id, {}).setdefault(row.name, row.id)
    seen: list[str] = []
    for env_id, live in observed.live.items():
        if not isinstance(live, LiveListing):
            continue
        names = rows_by_env.get(env_id, {})
        for c in live.containers:
            if c.state == "not_found":
                continue
            # A listing with ids: the id decides (a name alone may be a stranger's container).
            found = (c.instance_id if c.instance_id in known else None) if c.instance_id else names.get(c.name)
            if found is not None:
                seen.append(found)
    return tuple(sorted(set(seen)))


def targets_for(recorded: RecordedState, settings: Settings) -> dict[str, DtmaTarget]:
    return {
        t.environment_id: t for e in recorded.environments if isinstance(t := target_for(e, settings), DtmaTarget)
    }


def observe(
    store: Store,
    dtma: Dtma,
    settings: Settings,
    *,
    environment_ids: Collection[str] | None = None,
    environments: Sequence[RecordedEnvironment] | None = None,
) -> Observed:
    """One full observation. ``environment_ids`` (ids or names, from ``--env``) limits the listings;
    ``environments`` are the environment rows when the caller has just read them.

    The listings start as soon as the environment rows are read; the instance rows are read meanwhile (in
    this thread: the store's connection stays on the thread that opened it).
    """
    environments = tuple(store.observe_environments() if environments is None else environments)
    live: dict[str, LiveState] = {}
    targets: list[DtmaTarget] = []
    for env in environments:
        if environment_ids is not None and env.id not in environment_ids and env.name not in environment_ids:
            continue
        target = target_for(env, settings)
        if isinstance(target, Unreachable):
            live[env.id] = target
        else:
            targets.append(target)
    if targets:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="observe-listings") as pool:
            listings = pool.submit(dtma.list_many, targets)
            instances = store.observe_instances()
            results = listings.result()
    else:
        instances, results = store.observe_instances(), {}
    for env_id, listing in results.items():
        live[env_id] = Unreachable(env_id, str(listing)) if isinstance(listing, Exception) else listing
    for target in targets:  # a client that forgot one is still not "empty"
        live.setdefault(target.environment_id, Unreachable(target.environment_id, "no listing returned"))
    return Observed(recorded=RecordedState(environments=environments, instances=instances), live=live)


# What a recorded status says about the container, for a plan made without reading the listings
# (--no-refresh): the rows stand in for the listing. A status with no container behind it lists nothing.
_STATE_OF_STATUS: dict[str, ContainerState] = {
    "running": "running",
    "active": "running",
    "stopped": "exited",
    "error": "exited",
    "error_runtime": "exited",
    "deploying": "created",
    "starting": "created",
    "stopping": "running",
}


def observe_recorded(
    store: Store,
    *,
    environment_ids: Collection[str] | None = None,
    environments: Sequence[RecordedEnvironment] | None = None,
) -> Observed:
    """An observation from the database only: each toolbox in scope "lists" what its rows record. No DTMA
    call; the plan made from it says the live state was not read and cannot be saved for apply."""
    environments = tuple(store.observe_environments() if environments is None else environments)
    instances = store.observe_instances()
    live: dict[str, LiveState] = {}
    for env in environments:
        if environment_ids is not None and env.id not in environment_ids and env.name not in environment_ids:
            continue
        containers = tuple(
            LiveContainer(row.name, _STATE_OF_STATUS[row.status], row.image, row.id)
            for row in instances
            if row.environment_id == env.id and row.name and row.status in _STATE_OF_STATUS
        )
        live[env.id] = LiveListing(env.id, containers, "c")
    return Observed(recorded=RecordedState(environments=environments, instances=instances), live=live)
