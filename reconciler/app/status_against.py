"""``status PATH...``: the manifests (desired) against the rows (recorded) and the listings (live), per server."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, replace
from datetime import datetime
from typing import Any

from reconciler.app.reconcile import _suspension, health_fields, last_steps
from reconciler.app.stores import open_store
from reconciler.app.tuning import policy_for
from reconciler.app.wiring import SystemClock, open_dtma, secret_key
from reconciler.core.health import ProbeResult
from reconciler.core.observed import LiveListing, Observed, ServerHealth
from reconciler.core.planner import plan
from reconciler.core.status_compare import compare
from reconciler.model.loader import load_manifests, secret_fingerprints
from reconciler.model.spec import Desired
from reconciler.runtime.cycle import scope
from reconciler.runtime.observe import observe
from reconciler.settings import Settings


def status_against(
    settings: Settings,
    paths: Sequence[str],
    *,
    env_filter: Sequence[str] | None = None,
    journal_path: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """One row per server of the environments the manifests declare (narrowed by ``env_filter``): desired,
    recorded and live, what differs (``differs``), and the step and notices a plan would give it. Secret values
    are read from ``environ`` only to fingerprint them; a variable not set leaves that spec uncompared."""
    desired = scope(load_manifests(list(paths)), env_filter)
    environ = os.environ if environ is None else environ
    values = {
        ref.env_var: environ[ref.env_var]
        for e in desired.environments
        for s in e.servers
        for _, ref in s.secret_refs
        if ref.env_var in environ
    }
    store = open_store(settings.database_url)
    try:
        key = secret_key(settings, store)
        dtma = open_dtma(settings)
        try:
            observed = observe(
                store, dtma, settings, environment_ids={e.environment for e in desired.environments}
            )
        finally:
            dtma.close()
        suspended = {s.environment_id: s for s in store.suspensions()}
        probes = store.recorded_health()
    finally:
        store.close()
    fingerprints = secret_fingerprints(values, key)
    # status probes nothing: the plan and the comparison read the health the last cycle recorded, as shown
    observed = replace(observed, health=recorded_health(desired, observed, probes, settings.unhealthy_after))
    the_plan = plan(desired, observed, policy_for(settings, None), SystemClock().now(), fingerprints)
    last = last_steps(settings, journal_path)
    ids = {e.name or e.id: e.id for e in observed.recorded.environments}
    instances = {(i.environment_id, i.name): i.id for i in observed.recorded.instances if i.name}
    rows: list[dict[str, Any]] = []
    for c in compare(desired, observed, the_plan, fingerprints):
        row = asdict(c)
        row["differs"] = list(c.differs)
        row["notices"] = list(c.notices)
        row["last_step"] = last.get((c.environment, c.server))
        row["suspended"] = _suspension(suspended.get(ids.get(c.environment, "")))
        row["desired_from"] = "manifests"
        row.update(health_fields(probes.get(instances.get((ids.get(c.environment, ""), c.server), "")), c.live))
        rows.append(row)
    return rows


def recorded_health(
    desired: Desired, observed: Observed, probes: Mapping[str, Mapping[str, Any]], default_threshold: int
) -> dict[tuple[str, str], ServerHealth]:
    """The last recorded probe of each declared server whose container the listing shows running, as the
    cycle's health (a server whose last probe failed is not a ``sync-status`` back to ``running``)."""
    rows = {(i.environment_id, i.name): i.id for i in observed.recorded.instances if i.name}
    by_name = {e.name: e.id for e in observed.recorded.environments if e.name}
    found: dict[tuple[str, str], ServerHealth] = {}
    for spec in desired.environments:
        env_id = spec.environment if spec.environment in observed.live else by_name.get(spec.environment)
        listing = observed.live.get(env_id) if env_id is not None else None
        if env_id is None or not isinstance(listing, LiveListing):
            continue
        running = {c.name for c in listing.containers if c.state == "running"}
        for server in spec.servers:
            metadata = probes.get(rows.get((env_id, server.name), ""))
            probe = metadata.get("last_probe") if metadata is not None else None
            if (
                server.name not in running
                or not isinstance(probe, Mapping)
                or not isinstance(probe.get("ok"), bool)
            ):
                continue
            assert metadata is not None
            try:
                at = datetime.fromisoformat(str(probe.get("at")))
            except ValueError:
                continue
            failures = probe.get("consecutive_failures")
            result = ProbeResult(
                ok=probe["ok"],
                error=probe.get("error") if isinstance(probe.get("error"), str) else None,
                capabilities=tuple(str(c) for c in metadata.get("capabilities") or ()),
                tools=tuple(str(t) for t in metadata.get("tools") or ()),
            )
            found[(env_id, server.name)] = ServerHealth(
                kind=str(metadata.get("readiness") or "mcp"),
                result=result,
                probed_at=at,
                failures=failures if isinstance(failures, int) and not isinstance(failures, bool) else 0,
                threshold=server.readiness.failure_threshold or default_threshold,
            )
    return found
