"""A simulated MCP server's kept-alive connection (a prober keeps one per server between cycles): it answers
the next request on the same connection, and it is closed when its container stops."""

from __future__ import annotations

import http.client
import json
import random
from collections.abc import Iterator

import pytest
from sim_helpers import FakeClock, RunningSimulator, call, running_simulator

HOST = f"127.79.{random.randrange(1, 255)}.1"  # drawn per run: the MCP port is fixed
PORT = 31003


@pytest.fixture
def sim() -> Iterator[RunningSimulator]:
    with running_simulator(toolboxes=1, per="address", host=HOST, clock=FakeClock()) as running:
        body = {
            "dockerImageUrl": "ghcr.io/example/idle-mcp:1",
            "instanceNameOnToolbox": "idle",
            "accountToolInstanceId": "id-idle",
            "baseConfigOverrideJson": {"HostConfig": {"PortBindings": {"8080/tcp": [{"HostPort": str(PORT)}]}}},
        }
        assert call(running.addresses[0], "POST", "/tools", body)[0] == 201
        yield running


def post(conn: http.client.HTTPConnection, message: dict[str, object], session: str = "") -> tuple[int, str]:
    headers = {"Content-Type": "application/json", **({"Mcp-Session-Id": session} if session else {})}
    conn.request("POST", "/mcp", json.dumps(message), headers)
    answer = conn.getresponse()
    answer.read()
    return answer.status, answer.getheader("Mcp-Session-Id") or session


def test_a_kept_alive_connection_answers_again_and_closes_with_its_container(sim: RunningSimulator) -> None:
    conn = http.client.HTTPConnection(HOST, PORT, timeout=10)
    try:
        status, session = post(conn, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}})
        assert status == 200 and session
        for n in range(2, 5):  # each after the connection went idle
            assert post(conn, {"jsonrpc": "2.0", "id": n, "method": "tools/list"}, session)[0] == 200
        counted = sim.sim.mcp_counters(0)
        assert counted["(connection)"] == 1 and counted["tools/list"] == 3
        sock = conn.sock
        assert sock is not None
        assert call(sim.addresses[0], "POST", "/tools/idle/stop")[0] == 200
        assert sock.recv(1) == b""  # closed by the server, not left open
    finally:
        conn.close()
