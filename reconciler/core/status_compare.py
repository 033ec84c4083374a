"""``status PATH...``: per server, desired (the manifests) against recorded (the rows) against live (the
listing), with what differs named, and the step and notices the plan gives it.

Pure: the desired state, one observation and the plan made from them in, one ``ServerComparison`` per server
out. Nothing is compared that was not observed: an unreachable toolbox's servers say ``unobserved``, and a
spec whose secret values are not set here is not compared (``spec?``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from reconciler.core.observed import LiveContainer, LiveListing, Observed, RecordedEnvironment, RecordedInstance
from reconciler.core.plan import Plan
from reconciler.core.status_map import status_for
from reconciler.model.spec import Desired, ServerSpec
from reconciler.model.spec_hash import HASH_VERSION, spec_hash

# What each mark in ``differs`` means (the README's status section lists them too).
MARKS: Mapping[str, str] = {
    "not-declared": "recorded or running, not in the manifests",
    "not-recorded": "declared, no row records it",
    "not-deployed": "declared, no container is listed",
    "image": "the declared image differs from the recorded or the running one",
    "spec": "the declared spec differs from the one recorded at the last apply (spec hash)",
    "spec?": "not compared: a secretFromEnv variable it uses is not set here",
    "state": "declared running and not running, or declared stopped and running",
    "applied-state": "the state recorded at the last apply differs from the declared one",
    "status": "the recorded status does not describe the running container",
    "unobserved": "the toolbox was not listed: live state unknown",
    "unknown-environment": "the manifests name a toolbox the database does not have",
}


@dataclass(frozen=True)
class ServerComparison:
    environment: str
    server: str
    declared: bool
    managed: bool
    desired_state: str | None  # the manifest's
    desired_image: str | None
    recorded: str | None  # status_on_toolbox
    applied_state: str | None  # the desired state the row recorded at the last apply
    recorded_image: str | None
    live: str  # a container state, "absent", or "unreachable: why"
    live_image: str | None
    differs: tuple[str, ...]
    planned: str | None  # "replace: why", the plan's step for this server
    notices: tuple[str, ...]  # "kind: message"


def compare(
    desired: Desired, observed: Observed, plan: Plan, fingerprints: Mapping[str, str]
) -> tuple[ServerComparison, ...]:
    by_id = {e.id: e for e in observed.recorded.environments}
    by_name: dict[str, RecordedEnvironment] = {}
    for recorded_env in sorted(observed.recorded.environments, key=lambda e: e.id):
        if recorded_env.name is not None:
            by_name.setdefault(recorded_env.name, recorded_env)
    steps = {(s.environment_name, s.server): f"{s.action.value}: {s.reason}" for s in plan.steps}
    notices: dict[tuple[str, str | None], list[str]] = {}
    for n in plan.notices:
        notices.setdefault((n.environment_name, n.server), []).append(f"{n.kind.value}: {n.message}")
    out: list[ServerComparison] = []
    for spec in sorted(desired.environments, key=lambda e: e.environment):
        env = by_id.get(spec.environment) or by_name.get(spec.environment)
        declared = {s.name: s for s in spec.servers}
        if env is None:
            for name, server in sorted(declared.items()):
                out.append(
                    ServerComparison(
                        environment=spec.environment,
                        server=name,
                        declared=True,
                        managed=False,
                        desired_state=server.state,
                        desired_image=server.image,
                        recorded=None,
                        applied_state=None,
                        recorded_image=None,
                        live="unknown environment",
                        live_image=None,
                        differs=("unknown-environment",),
                        planned=None,
                        notices=(),
                    )
                )
            continue
        label = env.name or env.id
        rows = {r.name: r for r in observed.recorded.instances if r.environment_id == env.id and r.name}
        live = observed.live.get(env.id)
        listing = live if isinstance(live, LiveListing) else None
        containers = {c.name: c for c in listing.containers if c.state != "not_found"} if listing else {}
        unreachable = None if listing is not None else (getattr(live, "reason", None) or "no listing was taken")
        for name in sorted(set(declared) | set(rows) | set(containers)):
            d, r, c = declared.get(name), rows.get(name), containers.get(name)
            out.append(
                _one(
                    environment=label,
                    name=name,
                    d=d,
                    r=r,
                    c=c,
                    unreachable=unreachable,
                    fingerprints=fingerprints,
                    probe_ok=_probe_ok(observed, env.id, name),
                    planned=steps.get((label, name)),
                    notices=tuple(notices.get((label, name), ())),
                )
            )
    return tuple(out)


def _probe_ok(observed: Observed, environment_id: str, server: str) -> bool | None:
    """What the server's readiness probe said (None: not probed): a running container whose server fails
    its probe is rightly recorded ``error_runtime``, not a status that differs."""
    health = observed.health.get((environment_id, server))
    return health.ok if health is not None else None


def _one(
    *,
    environment: str,
    name: str,
    d: ServerSpec | None,
    r: RecordedInstance | None,
    c: LiveContainer | None,
    unreachable: str | None,
    fingerprints: Mapping[str, str],
    planned: str | None,
    notices: tuple[str, ...],
    probe_ok: bool | None = None,
) -> ServerComparison:
    applied = r.config.get("desired_state") if r is not None else None
    applied = applied if isinstance(applied, str) else None
    live = f"unreachable: {unreachable}" if unreachable is not None else (c.state if c is not None else "absent")
    marks: list[str] = []
    if d is None:
        if r is not None and r.managed:
            marks.append("not-declared")
    else:
        if r is None:
            marks.append("not-recorded")
        if unreachable is None and c is None:
            marks.append("not-deployed")
        images = {i for i in (r.image if r is not None else None, c.image if c is not None else None) if i}
        if images - {d.image}:
            marks.append("image")
        if r is not None and r.managed and r.spec_hash is not None and r.hash_version == HASH_VERSION:
            if any(ref.env_var not in fingerprints for _, ref in d.secret_refs):
                marks.append("spec?")
            elif spec_hash(d, fingerprints) != r.spec_hash:
                marks.append("spec")
        if c is not None and unreachable is None:
            running = c.state == "running"
            if (d.state == "running") != running:
                marks.append("state")
        if applied is not None and applied != d.state:
            marks.append("applied-state")
    if r is not None and c is not None and unreachable is None:
        mapped = status_for(c.state, d.state if d is not None else "running", probe_ok)
        if mapped is not None and r.status != mapped:
            marks.append("status")
    if unreachable is not None:
        marks.append("unobserved")
    return ServerComparison(
        environment=environment,
        server=name,
        declared=d is not None,
        managed=bool(r is not None and r.managed),
        desired_state=d.state if d is not None else None,
        desired_image=d.image if d is not None else None,
        recorded=r.status if r is not None else None,
        applied_state=applied,
        recorded_image=r.image if r is not None else None,
        live=live,
        live_image=c.image if c is not None else None,
        differs=tuple(marks),
        planned=planned,
        notices=notices,
    )
