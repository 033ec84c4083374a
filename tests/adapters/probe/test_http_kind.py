"""The ``http`` readiness kind against the simulator's own ``GET /health`` over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sim_helpers import RunningSimulator, running_simulator

from reconciler.adapters.mcp_probe import McpProber
from reconciler.core.health import ProbeTarget, ReadinessKind


@pytest.fixture
def sim() -> Iterator[RunningSimulator]:
    with running_simulator(toolboxes=1) as running:
        yield running


def _target(sim: RunningSimulator, path: str, server: str = "s") -> ProbeTarget:
    host, port = sim.addresses[0].rsplit(":", 1)
    return ProbeTarget("env-0", server, host, int(port), ReadinessKind.HTTP, path, timeout=3.0)


def test_http_kind_wants_a_2xx(sim: RunningSimulator) -> None:
    prober = McpProber()
    try:
        found = prober.probe_many([_target(sim, "/health", "a"), _target(sim, "/nope", "b")], concurrency=2)
    finally:
        prober.close()
    assert found[("env-0", "a")].ok and found[("env-0", "a")].error is None
    assert not found[("env-0", "b")].ok
    assert found[("env-0", "b")].error is not None and "answered 40" in found[("env-0", "b")].error


def test_a_closed_port_is_a_result_not_an_exception() -> None:
    prober = McpProber()
    try:
        target = ProbeTarget("env-0", "s", "127.0.0.1", 1, ReadinessKind.HTTP, "/health", timeout=2.0)
        result = prober.probe_many([target], concurrency=1)[("env-0", "s")]
    finally:
        prober.close()
    assert not result.ok and result.error == "connection refused"
