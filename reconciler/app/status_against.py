"""``status PATH...``: the manifests (desired) against the rows (recorded) and the listings (live), per server."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

from reconciler.app.reconcile import _suspension, health_fields, last_steps
from reconciler.app.stores import open_store
from reconciler.app.tuning import policy_for
from reconciler.app.wiring import SystemClock, open_dtma, secret_key
from reconciler.core.planner import plan
from reconciler.core.status_compare import compare
from reconciler.model.loader import load_manifests, secret_fingerprints
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
        row.update(health_fields(probes.get(instances.get((ids.get(c.environment, ""), c.server), ""))))
        rows.append(row)
    return rows
