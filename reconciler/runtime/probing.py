"""Readiness probes in the cycle, through the ``Prober`` port: the running servers' health after each
observation, the wait for readiness after a create, replace or start, and what is written back.

- ``probe_health``: one bounded batch of probes per cycle (never two in flight for one server), folded with the
  consecutive-failure counts the caller keeps into ``Observed.health``.
- ``ReadinessWait``: polls one server's probe with the injected clock and sleep until it passes or its
  readiness timeout runs out.
- ``health_records``: what the apply path writes to ``mcp_discovery_metadata`` and ``mcp_server_capabilities``
  after the cycle, only for rows whose probe says something new (or was last written a while ago).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from reconciler.core.health import ProbeResult, probed_state
from reconciler.core.observed import LiveListing, Observed, RecordedInstance, ServerHealth
from reconciler.core.readiness import Key, assess, probe_targets, target_for
from reconciler.model.spec import Desired, ServerSpec
from reconciler.ports import Clock, DtmaTarget, HealthRecord, Prober
from reconciler.settings import Settings

# A row whose health has not changed is written again only this often (the last probe's time moves on).
REWRITE_AFTER = 300.0


def probe_health(
    prober: Prober,
    desired: Desired,
    observed: Observed,
    settings: Settings,
    *,
    failures: Mapping[Key, int],
    now: datetime,
) -> tuple[Observed, dict[Key, int]]:
    """``observed`` with the health of every running server that has a network readiness, and the next
    consecutive-failure counts."""
    probes = probe_targets(desired, observed, timeout=settings.probe_timeout)
    targets = [target for target, _ in probes]
    results = prober.probe_many(targets, concurrency=settings.probe_concurrency) if targets else {}
    thresholds = {
        target.key: spec.readiness.failure_threshold
        for target, spec in probes
        if spec.readiness.failure_threshold is not None
    }
    listed = {env_id for env_id, live in observed.live.items() if isinstance(live, LiveListing)}
    health, counts = assess(
        targets, results, failures, listed, now=now, thresholds=thresholds,
        default_threshold=settings.unhealthy_after,
    )  # fmt: skip
    return replace(observed, health=health), counts


@dataclass(frozen=True)
class ReadinessConfig:
    default_timeout: float = 30.0  # seconds a server has to pass when its manifest names no timeout
    probe_timeout: float = 5.0  # one probe
    poll_interval: float = 1.0  # between probes while waiting


class ReadinessWait:
    """After a create, replace or start: probe until the server passes or its readiness timeout runs out."""

    def __init__(
        self, prober: Prober | None, clock: Clock, sleep: Callable[[float], None], config: ReadinessConfig
    ) -> None:
        self.prober, self.clock, self.sleep, self.config = prober, clock, sleep, config

    def timeout(self, spec: ServerSpec) -> float:
        return spec.readiness.timeout or self.config.default_timeout

    def wait(self, spec: ServerSpec | None, target: DtmaTarget) -> ProbeResult | None:
        """The last probe's result (ok or not), or None when there is nothing to probe (no prober, readiness
        none, a server wanted stopped)."""
        if self.prober is None or spec is None or spec.state != "running":
            return None
        address = urlsplit(target.base_url).hostname
        probe = target_for(spec, target.environment_id, address, self.config.probe_timeout) if address else None
        if probe is None:
            return None
        deadline = self.clock.monotonic() + self.timeout(spec)
        while True:
            remaining = max(deadline - self.clock.monotonic(), 0.1)
            one = replace(probe, timeout=min(self.config.probe_timeout, remaining))
            # fresh: a new or restarted server passes a whole handshake, not one request on an old session
            result = self.prober.probe_many([one], concurrency=1, fresh=True).get(probe.key)
            result = result or ProbeResult(False, "the prober returned no result")
            if result.ok or self.clock.monotonic() >= deadline:
                return result
            self.sleep(min(self.config.poll_interval, max(deadline - self.clock.monotonic(), 0.0)))


def health_metadata(health: ServerHealth, container_state: str) -> dict[str, Any]:
    """What one probe adds to ``mcp_discovery_metadata`` (merged over the keys the reconciler keeps there)."""
    result = health.result
    state, verdict = probed_state(container_state, result)
    return {
        "state": state,
        "health": verdict,
        "readiness": health.kind,
        "protocol_version": result.protocol_version,
        "server_name": result.server_name,
        "server_version": result.server_version,
        "capabilities": list(result.capabilities),
        "tools": list(result.tools),
        "resources": list(result.resources),
        "prompts": list(result.prompts),
        "last_probe": {
            "at": health.probed_at.isoformat(),
            "ok": result.ok,
            "error": result.error,
            "duration_ms": round(result.duration * 1000),
            "consecutive_failures": health.failures,
        },
    }


def health_records(
    health: Mapping[Key, ServerHealth],
    rows: Mapping[Key, RecordedInstance],
    written: Mapping[Key, tuple[object, float]],
    monotonic: float,
) -> tuple[list[HealthRecord], dict[Key, tuple[object, float]]]:
    """The rows to write and the new memory of what was written (what the probe found, when). A row is written
    when what its probe found changed (its time aside) or when it was last written ``REWRITE_AFTER`` seconds
    ago. The comparison is of plain tuples: at 10,000 servers a cycle, encoding each answer to compare it
    would cost more than the writes it saves."""
    records: list[HealthRecord] = []
    memory = dict(written)
    for key, one in health.items():
        row = rows.get(key)
        if row is None or not row.managed:
            continue
        found = (one.kind, one.failures, replace(one.result, duration=0.0))  # its time aside
        before = written.get(key)
        if before is not None and before[0] == found and monotonic - before[1] < REWRITE_AFTER:
            continue
        capabilities = list(one.result.capabilities) if one.ok and one.kind == "mcp" else None
        records.append(HealthRecord(row.id, health_metadata(one, "running"), capabilities))
        memory[key] = (found, monotonic)
    return records, memory
