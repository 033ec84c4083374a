"""The simulated MCP servers: a running container with a published host port listens on its toolbox's own
loopback address, and stops listening when the container stops or goes."""

from __future__ import annotations

import json
import random
import socket
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from reconciler.simulator.images import McpBehaviour, parse_image_flag
from tests.sim_helpers import FakeClock, RunningSimulator, call, running_simulator

# Drawn per run: the simulated MCP servers listen on fixed ports, and another test process on this machine
# must not hold the same address and port.
HOST = f"127.78.{random.randrange(1, 255)}.1"
HOST_1 = HOST[:-1] + "2"  # the second toolbox
PORT = 31002


def deploy(name: str, port: int | None = PORT, image: str = "mcp/time:1") -> dict[str, Any]:
    override: dict[str, Any] = {}
    if port is not None:
        override["HostConfig"] = {"PortBindings": {"8080/tcp": [{"HostPort": str(port)}]}}
    return {
        "dockerImageUrl": image,
        "instanceNameOnToolbox": name,
        "accountToolInstanceId": f"id-{name}",
        "baseConfigOverrideJson": override,
    }


def listening(ip: str, port: int = PORT) -> bool:
    try:
        socket.create_connection((ip, port), timeout=2).close()
    except ConnectionRefusedError:
        return False
    return True


def initialize(ip: str, port: int = PORT) -> dict[str, Any]:
    body = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18"}}
    req = urllib.request.Request(
        f"http://{ip}:{port}/mcp",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Accept": "application/json, text/event-stream"},
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.headers["Mcp-Session-Id"]
        return dict(json.loads(resp.read()))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["newer", "older", "kind"])
def sim(request: pytest.FixtureRequest, clock: FakeClock) -> Iterator[RunningSimulator]:
    with running_simulator(toolboxes=2, per="address", host=HOST, clock=clock, mode=request.param) as running:
        yield running


def test_listens_while_running_and_not_after(sim: RunningSimulator) -> None:
    a = sim.addresses[0]
    assert not listening(HOST)
    assert call(a, "POST", "/tools", deploy("time"))[0] == 201
    assert listening(HOST) and not listening(HOST_1)  # only its own toolbox's address
    assert initialize(HOST)["result"]["serverInfo"] == {"name": "time", "version": "1"}
    assert call(a, "POST", "/tools/time/stop")[0] == 200
    assert not listening(HOST)
    assert call(a, "POST", "/tools/time/start")[0] == 200
    assert listening(HOST)
    assert call(a, "DELETE", "/tools/time")[0] == 200
    assert not listening(HOST)
    assert sim.sim.mcp_status(0)["listening"] == {}


def test_each_toolbox_has_its_own_address(sim: RunningSimulator) -> None:
    for box in (0, 1):
        assert call(sim.addresses[box], "POST", "/tools", deploy("time"))[0] == 201
    assert listening(HOST) and listening(HOST_1)
    sim.sim.docker_rm(1, "time")  # behind the agent's back
    assert listening(HOST) and not listening(HOST_1)


def test_no_host_port_or_a_broken_image_listens_nowhere(sim: RunningSimulator) -> None:
    a = sim.addresses[0]
    assert call(a, "POST", "/tools", deploy("stdio-server", port=None))[0] == 201
    assert sim.sim.mcp_status(0)["listening"] == {}
    sim.sim.set_image("bad/server:2", exposes=[8080])
    sim.sim.set_mcp("bad/server:2", fault="broken")
    assert call(a, "POST", "/tools", deploy("bad", image="bad/server:2"))[0] == 201
    assert not listening(HOST)
    sim.sim.set_mcp("bad/server:2", fault="none")  # the image fixed: its running container answers at once
    assert listening(HOST)


def test_an_exited_container_answers_nothing(sim: RunningSimulator, clock: FakeClock) -> None:
    a = sim.addresses[0]
    assert call(a, "POST", "/tools", deploy("time"))[0] == 201
    assert call(a, "POST", "/__sim/exit-after", {"name": "time", "seconds": 5}, token=None,
                headers={"X-Sim-Admin-Token": sim.sim.admin_token})[0] == 200  # fmt: skip
    clock.advance(6)
    with pytest.raises((ConnectionError, urllib.error.URLError)):
        initialize(HOST)


def test_admin_route_sets_faults_per_image_and_per_container(sim: RunningSimulator) -> None:
    a = sim.addresses[0]
    assert call(a, "POST", "/tools", deploy("time"))[0] == 201
    image = sim.admin(0, "POST", "/__sim/mcp", {"image": "mcp/time:1", "fault": "wrong-protocol"})
    assert image["fault"] == "wrong-protocol"
    assert initialize(HOST)["result"]["protocolVersion"] == "1999-01-01"
    one = sim.admin(0, "POST", "/__sim/mcp", {"name": "time", "fault": "handshake-error", "tools": ["x"]})
    assert (one["fault"], one["tools"]) == ("handshake-error", ["x"])
    assert initialize(HOST)["error"]["code"] == -32603
    status = sim.admin(0, "GET", "/__sim/mcp")
    assert status["listening"] == {str(PORT): "time"} and status["counters"]["initialize"] == 2
    with pytest.raises(urllib.error.HTTPError) as bad:
        sim.admin(0, "POST", "/__sim/mcp", {"image": "mcp/time:1", "fault": "sometimes"})
    assert bad.value.code == 400


def test_image_flags_and_behaviour_defaults() -> None:
    assert parse_image_flag("bad:2=8080;broken")[1].mcp.fault == "broken"
    spec = parse_image_flag("x:1=8080;mcp=handshake-error;tools=a,b")[1]
    assert (spec.mcp.fault, spec.mcp.tools, spec.exposes) == ("handshake-error", ("a", "b"), ("8080/tcp",))
    assert McpBehaviour(resources=("r",)).announced == ("tools", "resources")
    assert McpBehaviour().updated({"latency": "0.02", "capabilities": ["tools"]}).as_dict()["latency"] == 0.02
    with pytest.raises(ValueError, match="unknown MCP setting"):
        McpBehaviour().updated({"colour": "red"})


def test_seeded_containers_with_ports_listen(sim: RunningSimulator) -> None:
    ports = {"8080/tcp": [{"HostPort": str(PORT)}]}
    seeded = sim.admin(
        0, "POST", "/__sim/seed", {"containers": [{"name": "s0", "instance_id": "i0", "ports": ports}]}
    )
    assert seeded["seeded"] == 1
    assert sim.sim.mcp_status(0)["listening"] == {str(PORT): "s0"}
    assert initialize(HOST)["result"]["capabilities"] == {"tools": {"listChanged": False}}
