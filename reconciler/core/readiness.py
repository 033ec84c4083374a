"""Readiness in the cycle: which running servers to probe, what their probes mean, and what they offer less
than declared (docs/architecture.md, "Readiness and health").

Pure: the probes themselves go through ``ports.Prober``; here are the targets, the consecutive-failure count
(a value the caller keeps between cycles) and the differences read from a probe's answer.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from datetime import datetime

from reconciler.core.health import ProbeResult, ProbeTarget, ReadinessKind
from reconciler.core.observed import LiveContainer, LiveListing, Observed, ServerHealth
from reconciler.model.spec import Desired, ServerSpec

Key = tuple[str, str]  # (environment id, server name)


def probe_kind(spec: ServerSpec) -> ReadinessKind:
    return ReadinessKind(spec.readiness_type)


def target_for(spec: ServerSpec, environment_id: str, address: str, timeout: float) -> ProbeTarget | None:
    """The probe of one server at its toolbox's address, or None when its readiness is the container state."""
    kind = probe_kind(spec)
    if kind is ReadinessKind.NONE or spec.host_port is None:
        return None
    return ProbeTarget(
        environment_id=environment_id,
        server=spec.name,
        address=address,
        port=spec.host_port,
        kind=kind,
        path=spec.readiness_path,
        transport=spec.transport,
        timeout=timeout,
    )


def probe_targets(
    desired: Desired, observed: Observed, *, timeout: float
) -> tuple[tuple[ProbeTarget, ServerSpec], ...]:
    """One probe (with the server it probes) per declared server with a network readiness whose container
    this observation lists as running, on a toolbox that was listed and has an address. Never two for one
    server."""
    # Only a server published on a host port can be probed (``target_for``): a toolbox with none costs one
    # pass over its specs, not a look at its listing (most fleets probe nothing).
    probed = [(spec, wanted) for spec in desired.environments if (wanted := _probed_servers(spec.servers))]
    if not probed:
        return ()
    by_id = {e.id: e for e in observed.recorded.environments}
    by_name = {e.name: e for e in sorted(observed.recorded.environments, key=lambda e: e.id) if e.name}
    targets: dict[Key, tuple[ProbeTarget, ServerSpec]] = {}
    for spec, wanted in probed:
        env = by_id.get(spec.environment) or by_name.get(spec.environment)
        listing = observed.live.get(env.id) if env is not None else None
        if env is None or env.address is None or not isinstance(listing, LiveListing):
            continue
        running = {c.name: c for c in listing.containers if c.state == "running"}
        for server in wanted:
            container = running.get(server.name)
            if container is None or _unpublished(server, container, listing):
                continue
            target = target_for(server, env.id, env.address, timeout)
            if target is not None:
                targets.setdefault((env.id, server.name), (target, server))
    return tuple(targets.values())


def _probed_servers(servers: Iterable[ServerSpec]) -> list[ServerSpec]:
    return [s for s in servers if s.host_port is not None and s.state == "running"]


def _unpublished(server: ServerSpec, container: LiveContainer, listing: LiveListing) -> bool:
    """The listing shows the container's ports and not the declared hostPort: nothing to probe (the planner's
    ``port-unpublished`` notice says why). Shape (a) lists no ports: probed."""
    if listing.shape == "a" or server.host_port is None:
        return False
    return server.host_port not in {p.host_port for p in container.ports}


def assess(
    targets: Iterable[ProbeTarget],
    results: Mapping[Key, ProbeResult],
    failures: Mapping[Key, int],
    probed_environments: Collection[str],
    *,
    now: datetime,
    thresholds: Mapping[Key, int],
    default_threshold: int,
) -> tuple[dict[Key, ServerHealth], dict[Key, int]]:
    """Each target's health this cycle and the next consecutive-failure counts.

    Counts of the environments probed this cycle are this cycle's (a server not probed any more starts
    again from zero); counts of other environments (skipped, unreachable) are kept as they were."""
    counts = {k: n for k, n in failures.items() if k[0] not in probed_environments}
    health: dict[Key, ServerHealth] = {}
    for target in targets:
        key = target.key
        result = results.get(key) or ProbeResult(False, "no probe result")
        count = 0 if result.ok else failures.get(key, 0) + 1
        if count:
            counts[key] = count
        health[key] = ServerHealth(
            kind=str(target.kind),
            result=result,
            probed_at=now,
            failures=count,
            threshold=thresholds.get(key, default_threshold),
        )
    return health, counts


def offer_drift(spec: ServerSpec, result: ProbeResult) -> str | None:
    """What a server that answered MCP offers less than its manifest says: declared capabilities it does not
    announce, pinned tools it does not list. None when it offers everything (or was not asked over MCP)."""
    if not result.ok or probe_kind(spec) is not ReadinessKind.MCP:
        return None
    parts = []
    missing = sorted(set(spec.capabilities) - set(result.capabilities))
    if missing:
        parts.append(f"capabilities declared but not announced: {', '.join(missing)}")
    if spec.tools is not None:
        gone = sorted(set(spec.tools) - set(result.tools))
        if gone:
            parts.append(f"pinned tools not listed: {', '.join(gone)}")
    return "; ".join(parts) or None
