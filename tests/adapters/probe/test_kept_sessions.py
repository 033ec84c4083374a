"""Steady-state probes: a server's MCP session and its connection kept from one probe round to the next, one
request per probe on it, and a full handshake whenever the session is gone, over real HTTP to the simulator."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
from sim_helpers import FakeClock, RunningSimulator, call, running_simulator

from reconciler.adapters.mcp_probe import FULL_EVERY, McpProber
from reconciler.core.health import ProbeResult, ProbeTarget, ReadinessKind

HOST = f"127.78.{random.randrange(1, 255)}.1"  # drawn per run, like test_mcp_probe's
PORT = 31002
IMAGE = "ghcr.io/example/kept-mcp:1.0"


def deploy(sim: RunningSimulator, name: str = "kept", image: str = IMAGE, port: int = PORT) -> None:
    body = {
        "dockerImageUrl": image,
        "instanceNameOnToolbox": name,
        "accountToolInstanceId": f"id-{name}",
        "baseConfigOverrideJson": {"HostConfig": {"PortBindings": {"8080/tcp": [{"HostPort": str(port)}]}}},
    }
    status, answer = call(sim.addresses[0], "POST", "/tools", body)
    assert status == 201, answer


@pytest.fixture
def sim() -> Iterator[RunningSimulator]:
    with running_simulator(toolboxes=1, per="address", host=HOST, clock=FakeClock()) as running:
        yield running


@pytest.fixture
def prober() -> Iterator[McpProber]:
    p = McpProber()
    yield p
    p.close()


def target(server: str = "kept", port: int = PORT) -> ProbeTarget:
    return ProbeTarget("env-0", server, HOST, port, ReadinessKind.MCP, "/mcp")


def probe(prober: McpProber, t: ProbeTarget | None = None, *, fresh: bool = False) -> ProbeResult:
    t = t or target()
    return prober.probe_many([t], concurrency=2, fresh=fresh)[t.key]


def counted(sim: RunningSimulator, name: str) -> int:
    return sim.sim.mcp_counters(0).get(name, 0)


def test_the_second_round_is_one_request_on_the_kept_session(sim: RunningSimulator, prober: McpProber) -> None:
    sim.sim.set_mcp(IMAGE, tools=["b", "a"], prompts=["greet"])
    deploy(sim)
    first = probe(prober)
    second = probe(prober)
    assert first.ok and second.ok, (first.error, second.error)
    assert (second.server_name, second.server_version, second.tools, second.prompts) == (
        "kept-mcp", "1.0", ("a", "b"), ("greet",),
    )  # fmt: skip
    assert (counted(sim, "initialize"), counted(sim, "tools/list"), counted(sim, "prompts/list")) == (1, 2, 1)
    assert counted(sim, "(connection)") == 1 and counted(sim, "DELETE (session)") == 0
    assert prober.kept_sessions == 1


def test_a_changed_tool_list_shows_in_the_next_one_request_probe(sim: RunningSimulator, prober: McpProber) -> None:
    deploy(sim)
    assert probe(prober).tools == ("echo",)
    sim.sim.set_mcp(IMAGE, tools=["echo", "sum"])  # the running server's tools change
    assert probe(prober).tools == ("echo", "sum")
    assert counted(sim, "initialize") == 1


def test_a_forgotten_session_is_answered_404_and_the_probe_handshakes_again(
    sim: RunningSimulator, prober: McpProber
) -> None:
    deploy(sim)
    assert probe(prober).ok
    assert sim.sim.forget_mcp_sessions(0) == 1
    again = probe(prober)
    assert again.ok, again.error
    assert (counted(sim, "initialize"), counted(sim, "tools/list")) == (2, 3)  # the 404'd one, then a handshake
    assert probe(prober).ok and counted(sim, "initialize") == 2  # the new session is kept in turn


def test_a_restarted_container_is_handshaken_again(sim: RunningSimulator, prober: McpProber) -> None:
    deploy(sim)
    assert probe(prober).ok
    assert call(sim.addresses[0], "POST", "/tools/kept/stop")[0] == 200
    down = probe(prober)
    assert not down.ok and down.error == "connection refused"
    assert call(sim.addresses[0], "POST", "/tools/kept/start")[0] == 200
    up = probe(prober)
    assert up.ok, up.error
    assert counted(sim, "initialize") == 2 and counted(sim, "(connection)") >= 2


def test_a_replaced_container_reports_its_new_version(sim: RunningSimulator, prober: McpProber) -> None:
    sim.sim.set_mcp("example/files:2", tools=["read"])
    deploy(sim)
    assert probe(prober).server_version == "1.0"
    assert call(sim.addresses[0], "DELETE", "/tools/kept")[0] == 200
    deploy(sim, image="example/files:2")  # same name and port, another container
    found = probe(prober)
    assert (found.server_name, found.server_version, found.tools) == ("files", "2", ("read",))


def test_fresh_and_every_nth_probe_do_the_whole_handshake(sim: RunningSimulator, prober: McpProber) -> None:
    deploy(sim)
    assert probe(prober).ok
    assert probe(prober, fresh=True).ok  # the readiness wait's probe
    assert (counted(sim, "initialize"), counted(sim, "DELETE (session)")) == (2, 1)
    for _ in range(FULL_EVERY - 1):
        assert probe(prober).ok
    assert counted(sim, "initialize") == 2
    assert probe(prober).ok
    assert (counted(sim, "initialize"), counted(sim, "DELETE (session)")) == (3, 2)


def test_servers_a_round_no_longer_names_lose_their_sessions(sim: RunningSimulator, prober: McpProber) -> None:
    deploy(sim, "alpha", port=PORT)
    deploy(sim, "beta", port=PORT + 1)
    both = prober.probe_many([target("alpha"), target("beta", PORT + 1)], concurrency=2)
    assert all(r.ok for r in both.values()) and prober.kept_sessions == 2
    prober.probe_many([target("alpha")], concurrency=1, fresh=True)  # a readiness wait drops nothing
    assert prober.kept_sessions == 2
    assert probe(prober, target("alpha")).ok  # a cycle's round without b
    assert prober.kept_sessions == 1
    assert probe(prober, target("beta", PORT + 1)).ok and counted(sim, "initialize") == 4  # beta: a new session
