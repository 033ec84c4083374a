"""A steady-state daemon cycle with readiness probes: every server of the fleet publishes a host port and is
probed over MCP each cycle. The whole cycle (listings, probes, plan, the health writes) against the probe
bound: after the warm-up cycle every session is kept, so a probe is one round trip, and the bound is the
probes' (probes x latency / concurrency) plus the listings' (toolboxes x latency / DTMA concurrency)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from tests.benchmarks.fleet import build_fleet


def probed_cycle_job(job: dict[str, Any], work: Path) -> list[dict[str, Any]]:
    from reconciler.app.daemon import Daemon, DaemonConfig
    from tests.benchmarks.worker import measure, row, simulators

    n, servers, latency, concurrency = job["toolboxes"], job["servers"], job["latency"], job["concurrency"]
    with simulators(job).start(work) as sim:
        fleet = build_fleet(work, sim, servers, seed=True, probed=True)
        per, extra = divmod(sim.toolboxes, sim.processes)
        first = 0
        for k in range(sim.processes):  # images are per simulator process: each answers MCP after ``latency``
            for j in range(servers):
                sim.admin(first, "POST", "/__sim/mcp", {"image": f"ghcr.io/acme/mcp-s{j:03d}:1.0.0",
                                                        "latency": latency})  # fmt: skip
            first += per + (1 if k < extra else 0)
        settings = replace(fleet.settings, probe_concurrency=concurrency, probe_timeout=30.0)
        daemon = Daemon(settings, DaemonConfig(paths=tuple(fleet.paths), once=True))
        try:
            daemon.cycle()  # warm-up: imports, the prober's loop, and the first health writes
            m, report = measure(daemon.cycle)
        finally:
            daemon.close()
    health = report.plan.health if report.plan is not None else ()
    failed = [h.error for h in health if not h.ok]
    probes = n * servers
    bound = probes * latency / concurrency + n * latency / settings.dtma_concurrency
    return [
        row(
            "probed steady cycle (Daemon.cycle())",
            f"{n} x {servers} = {probes:,} servers",
            m,
            bound,
            target="within 2x of probes x latency / concurrency + listings",
            met=m.wall <= 2 * bound and not failed and len(health) == probes and not report.plan.steps,
            note=f"{concurrency} probes at once, {latency * 1000:g} ms per MCP answer and per listing; the whole "
            f"cycle: listings, probes, plan; CPU {m.cpu / probes * 1000:.2f} ms per server",
            facts={
                "probed": len(health),
                "ok": len(health) - len(failed),
                "first_error": failed[:1],
                "steps": len(report.plan.steps) if report.plan is not None else None,
            },
        )
    ]
