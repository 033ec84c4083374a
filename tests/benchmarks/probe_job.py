"""The MCP readiness probe at fleet scale: every server of every simulated toolbox probed, twice, as two cycles
would. The first round is a full handshake per server (probes x 4 round trips x latency / concurrency); the
second, the steady state, is one request on each kept session (probes x latency / concurrency, the bound of
the issue's row). The prober alone, outside the cycle: what a cycle's probing phase costs at most."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from reconciler.adapters.mcp_probe import McpProber
from reconciler.core.health import ProbeTarget, ReadinessKind
from tests.benchmarks.fleet import SimFleet

IMAGE = "ghcr.io/acme/mcp-probed:1.0.0"
FIRST_PORT = 31001
ROUND_TRIPS = 4  # initialize, notifications/initialized, tools/list, DELETE (each answered after the latency)


def probe_job(job: dict[str, Any], work: Path) -> list[dict[str, Any]]:
    from tests.benchmarks.worker import measure, row, simulators

    n, servers, latency, concurrency = job["toolboxes"], job["servers"], job["latency"], job["concurrency"]
    with simulators(job).start(work) as sim:
        _seed(sim, servers, latency)
        targets = [
            ProbeTarget(f"env-{i}", f"s{j:03d}", sim.ip(i), FIRST_PORT + j, ReadinessKind.MCP, "/mcp", timeout=30)
            for i in range(n)
            for j in range(servers)
        ]
        prober = McpProber()
        try:
            prober.probe_many(targets[:1], concurrency=1, fresh=True)  # warm-up: the loop thread, imports
            m, results = measure(lambda: prober.probe_many(targets, concurrency=concurrency))
            kept = prober.kept_sessions
            steady_m, steady = measure(lambda: prober.probe_many(targets, concurrency=concurrency))
        finally:
            # The simulators first, at once: closing 10,000 kept connections under them would wake their
            # 10,000 answering threads together (half a minute of both cores, outside what is measured).
            for pid in sim.pids:
                os.kill(pid, signal.SIGKILL)
            prober.close()
    failed = [r.error for r in results.values() if not r.ok]
    steady_failed = [r.error for r in steady.values() if not r.ok]
    bound = len(targets) * ROUND_TRIPS * latency / concurrency
    steady_bound = len(targets) * latency / concurrency
    return [
        row(
            "probe (MCP handshake)",
            f"{n} x {servers} = {len(targets):,} servers",
            m,
            bound,
            target="within 2x of probes x 4 round trips x latency / concurrency",
            met=m.wall <= 2 * bound and not failed,
            note=f"{concurrency} at once, {latency * 1000:g} ms per MCP answer; CPU (the prober's process) "
            f"{m.cpu / len(targets) * 1000:.2f} ms per probe",
            facts={"probed": len(results), "ok": len(results) - len(failed), "first_error": failed[:1]},
        ),
        row(
            "probe (steady state, kept sessions)",
            f"{n} x {servers} = {len(targets):,} servers",
            steady_m,
            steady_bound,
            target="within 2x of probes x latency / concurrency",
            met=steady_m.wall <= 2 * steady_bound and not steady_failed,
            note=f"the second round: one tools/list per server on the session the first kept; CPU (the "
            f"prober's process) {steady_m.cpu / len(targets) * 1000:.2f} ms per probe",
            facts={
                "probed": len(steady),
                "ok": len(steady) - len(steady_failed),
                "first_error": steady_failed[:1],
                "kept": kept,
            },
        ),
    ]


def _seed(sim: SimFleet, servers: int, latency: float) -> None:
    """Every toolbox runs ``servers`` containers of one image, each publishing its own host port; the image's
    MCP server answers after ``latency`` (set once per simulator process: images are per process)."""
    ports = [{"8080/tcp": [{"HostPort": str(FIRST_PORT + j)}]} for j in range(servers)]
    for i in range(sim.toolboxes):
        items = [
            {"name": f"s{j:03d}", "image": IMAGE, "instance_id": f"{i}-{j}", "ports": ports[j]}
            for j in range(servers)
        ]
        sim.admin(i, "POST", "/__sim/seed", {"containers": items})
    per, extra = divmod(sim.toolboxes, sim.processes)
    first = 0
    for k in range(sim.processes):
        sim.admin(first, "POST", "/__sim/mcp", {"image": IMAGE, "latency": latency})
        first += per + (1 if k < extra else 0)
