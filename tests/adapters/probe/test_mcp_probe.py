"""The MCP readiness probe against the simulator's MCP servers, over real HTTP on loopback."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from sim_helpers import FakeClock, RunningSimulator, call, running_simulator

from reconciler.adapters.mcp_probe import MAX_ERROR, PROTOCOL_VERSIONS, McpProber
from reconciler.core.health import ProbeResult, ProbeTarget, ReadinessKind

# Toolbox 0's address; toolbox 1 is the next. Drawn per run: the simulated MCP servers listen on fixed ports,
# and another test process on this machine must not hold the same address and port.
HOST = f"127.77.{random.randrange(1, 255)}.1"
HOST_1 = HOST[:-1] + "2"
PORT = 31001
IMAGE = "ghcr.io/example/time-mcp:1.2"


def deploy(sim: RunningSimulator, name: str = "time", image: str = IMAGE, port: int = PORT, box: int = 0) -> None:
    body = {
        "dockerImageUrl": image,
        "instanceNameOnToolbox": name,
        "accountToolInstanceId": f"id-{name}",
        "baseConfigOverrideJson": {"HostConfig": {"PortBindings": {"8080/tcp": [{"HostPort": str(port)}]}}},
    }
    status, answer = call(sim.addresses[box], "POST", "/tools", body)
    assert status == 201, answer


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sim(clock: FakeClock) -> Iterator[RunningSimulator]:
    with running_simulator(toolboxes=2, per="address", host=HOST, clock=clock) as running:
        yield running


@pytest.fixture
def prober() -> Iterator[McpProber]:
    p = McpProber(secrets=["hunter2-secret-value"])
    yield p
    p.close()


def target(
    server: str = "time", *, transport: str = "streamable-http", path: str = "/mcp", **kw: Any
) -> ProbeTarget:
    kind = kw.pop("kind", ReadinessKind.MCP)
    return ProbeTarget("env-0", server, kw.pop("address", HOST), kw.pop("port", PORT), kind, path, transport, **kw)


def probe(prober: McpProber, t: ProbeTarget) -> ProbeResult:
    return prober.probe_many([t], concurrency=4)[t.key]


@pytest.mark.parametrize(
    ("transport", "path"), [("streamable-http", "/mcp"), ("sse", "/sse"), ("websocket", "/ws")]
)
def test_a_healthy_server_passes_the_handshake(
    sim: RunningSimulator, prober: McpProber, transport: str, path: str
) -> None:
    deploy(sim)
    result = probe(prober, target(transport=transport, path=path))
    assert result.ok and result.error is None
    assert result.protocol_version == PROTOCOL_VERSIONS[0]
    assert (result.server_name, result.server_version) == ("time-mcp", "1.2")
    assert (result.capabilities, result.tools, result.resources, result.prompts) == (("tools",), ("echo",), (), ())
    counted = sim.sim.mcp_counters(0)
    assert counted["initialize"] == counted["notifications/initialized"] == counted["tools/list"] == 1
    assert "resources/list" not in counted and "prompts/list" not in counted  # not announced: not asked


def test_announced_lists_are_asked_for_and_sse_answers_are_read(sim: RunningSimulator, prober: McpProber) -> None:
    sim.sim.set_mcp(IMAGE, answers="sse", tools=["b", "a"], resources=["file:///notes"], prompts=["greet"])
    deploy(sim)
    result = probe(prober, target())
    assert result.ok, result.error
    assert result.capabilities == ("prompts", "resources", "tools")
    assert (result.tools, result.resources, result.prompts) == (("a", "b"), ("file:///notes",), ("greet",))
    assert sim.sim.mcp_counters(0).get("DELETE (session)", 0) == 0  # kept for the next probe
    again = prober.probe_many([target()], concurrency=1, fresh=True)[target().key]
    assert again == replace(result, duration=again.duration)
    assert sim.sim.mcp_counters(0)["DELETE (session)"] == 1  # a fresh probe ends the session it replaces


def test_each_fault_mode_is_a_failed_result(sim: RunningSimulator, prober: McpProber) -> None:
    deploy(sim)
    expected = {
        "wrong-protocol": "MCP protocol version '1999-01-01'",
        "handshake-error": "initialize failed (-32603): simulated handshake failure",
        "broken": "connection refused",
    }
    for fault, words in expected.items():
        sim.sim.set_mcp(IMAGE, fault=fault)
        for transport in ("streamable-http", "sse", "websocket"):
            result = probe(prober, target(transport=transport))
            assert not result.ok and result.error is not None and words in result.error, (fault, transport, result)
    sim.sim.set_mcp(IMAGE, fault="none")
    assert probe(prober, target()).ok


def test_a_server_that_never_answers_times_out(sim: RunningSimulator, prober: McpProber) -> None:
    deploy(sim)
    sim.sim.set_container_mcp(0, "time", fault="no-answer")  # this container only
    result = probe(prober, target(timeout=0.3))
    assert (result.ok, result.error) == (False, "timed out")
    assert sim.sim.mcp_counters(0)["POST (no answer)"] == 1


def test_slow_start_answers_only_once_ready(sim: RunningSimulator, prober: McpProber, clock: FakeClock) -> None:
    sim.sim.set_mcp(IMAGE, slow_start=20)
    deploy(sim)
    early = probe(prober, target())
    assert not early.ok and early.error == "connection closed by the server"
    clock.advance(20)
    assert probe(prober, target()).ok


def test_tools_change_between_image_versions(sim: RunningSimulator, prober: McpProber) -> None:
    sim.sim.set_mcp("example/files:1", tools=["read", "write"])
    sim.sim.set_mcp("example/files:2", tools=["read"])
    deploy(sim, "files", "example/files:1")
    assert probe(prober, target("files")).tools == ("read", "write")
    assert call(sim.addresses[0], "DELETE", "/tools/files")[0] == 200
    deploy(sim, "files", "example/files:2")
    assert probe(prober, target("files")).tools == ("read",)


def test_http_kind_and_other_kinds(sim: RunningSimulator, prober: McpProber) -> None:
    deploy(sim)
    found = prober.probe_many(
        [
            target("a", kind=ReadinessKind.HTTP, path="/health"),
            target("b", kind=ReadinessKind.HTTP, path="/nope"),
            target("c", kind=ReadinessKind.NONE, port=1),
            target("d", transport="stdio", path="/"),
        ],
        concurrency=2,
    )
    assert found[("env-0", "a")].ok
    assert found[("env-0", "b")].error == "GET /nope answered 404"
    assert found[("env-0", "c")].ok  # container state only: nothing is contacted
    assert found[("env-0", "d")].error == "unsupported: no MCP probe over the stdio transport"


def test_one_probe_per_server_and_toolboxes_apart(sim: RunningSimulator, prober: McpProber) -> None:
    deploy(sim, box=0)
    deploy(sim, box=1)  # the same host port on the other toolbox's own address
    twice = [target(), target()]
    other = ProbeTarget("env-1", "time", HOST_1, PORT, ReadinessKind.MCP, "/mcp")
    found = prober.probe_many([*twice, other], concurrency=8)
    assert set(found) == {("env-0", "time"), ("env-1", "time")} and all(r.ok for r in found.values())
    assert sim.sim.mcp_counters(0)["initialize"] == 1 and sim.sim.mcp_counters(1)["initialize"] == 1


def test_errors_are_redacted_and_cut_short(sim: RunningSimulator) -> None:
    deploy(sim)
    sim.sim.set_mcp(IMAGE, fault="handshake-error")
    p = McpProber(secrets=["simulated handshake"])
    try:
        result = probe(p, target())
    finally:
        p.close()
    assert result.error is not None and "simulated handshake" not in result.error and "[redacted]" in result.error
    p = McpProber()
    try:
        long = probe(p, target(kind=ReadinessKind.HTTP, path="/" + "y" * 2000))
    finally:
        p.close()
    assert long.error is not None and long.error.startswith("GET /yyy") and len(long.error) == MAX_ERROR
