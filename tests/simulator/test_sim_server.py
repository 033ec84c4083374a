"""The simulator itself, over real HTTP (urllib: the simulator tests do not depend on the client)."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from reconciler.simulator import Simulator, SimulatorError
from tests.sim_helpers import ADMIN_TOKEN, running_simulator

TOKEN = "tok"


def call(
    address: str,
    method: str,
    path: str,
    body: Any = None,
    token: str | None = TOKEN,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    h = dict(headers or {})
    if token is not None:
        h["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(f"http://{address}{path}", data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            raw = resp.read()
            status = resp.status
    except urllib.error.HTTPError as exc:
        raw, status = exc.read(), exc.code
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode()


SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "dtma-samples"
ERRORS = json.loads((SAMPLES / "errors.json").read_text())

DEPLOY = {
    "dockerImageUrl": "ghcr.io/upstash/context7-mcp:1.0.6",
    "instanceNameOnToolbox": "context7",
    "accountToolInstanceId": "id-1",
    "baseConfigOverrideJson": {
        "Env": ["A=1"],
        "HostConfig": {"PortBindings": {"8080/tcp": [{"HostPort": "31001"}]}},
    },
}


def test_error_bodies_match_the_samples() -> None:
    with running_simulator(token=TOKEN, mode="older") as sim:
        a = sim.addresses[0]
        assert call(a, "GET", "/status", token=None) == (401, ERRORS["401"])
        assert call(a, "GET", "/status", token="wrong") == (403, ERRORS["403"])
        assert call(a, "POST", "/tools", {}) == (400, ERRORS["400"])
        assert call(a, "POST", "/tools", DEPLOY)[0] == 201
        assert call(a, "POST", "/tools", DEPLOY) == (409, ERRORS["409_name"])
        assert call(a, "POST", "/tools", {**DEPLOY, "instanceNameOnToolbox": "other"}) == (409, ERRORS["409_port"])
        assert call(a, "POST", "/tools/nope/stop") == (
            404,
            ERRORS["404_tool"].copy() | {"error": "Tool instance 'nope' not found or not managed by this DTMA."},
        )
        assert call(a, "GET", "/nowhere") == (404, ERRORS["404_route"])
        assert call(a, "GET", "/tools/status") == (404, ERRORS["404_route"])  # shape a has no /tools/status
        sim.sim.set_faults(0, error_rate={"GET /status": 1.0})
        assert call(a, "GET", "/status") == (500, ERRORS["500_internal"])
        assert call(a, "GET", "/health", token=None) == (200, "OK")


def test_kind_deploy_answer_looks_like_the_invented_sample() -> None:
    sample = json.loads((SAMPLES / "deploy-201.json").read_text())
    with running_simulator(token=TOKEN, mode="kind") as sim:
        status, body = call(sim.addresses[0], "POST", "/tools", DEPLOY)
    assert status == 201
    assert set(body) == set(sample) and set(body["data"]) == set(sample["data"])
    assert body["data"]["ports"] == sample["data"]["ports"]


def test_kind_bad_container_name_and_agent_port() -> None:
    with running_simulator(token=TOKEN, mode="kind") as sim:
        a = sim.addresses[0]
        assert call(a, "POST", "/tools", {**DEPLOY, "instanceNameOnToolbox": "has space"})[0] == 500
        bindings = {"HostConfig": {"PortBindings": {"8080/tcp": [{"HostPort": "30000"}]}}}
        assert call(a, "POST", "/tools", {**DEPLOY, "baseConfigOverrideJson": bindings})[0] == 409


def test_refuses_non_loopback_and_missing_token(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SimulatorError, match="only loopback"):
        Simulator(host="10.0.0.1", token="t")
    with pytest.raises(SimulatorError, match="only loopback"):
        Simulator(host="0.0.0.0", token="t")
    monkeypatch.delenv("BACKEND_TO_DTMA_API_KEY", raising=False)
    monkeypatch.delenv("DTMA_BEARER_TOKEN", raising=False)
    with pytest.raises(SimulatorError, match="BACKEND_TO_DTMA_API_KEY"):
        Simulator()
    monkeypatch.setenv("DTMA_BEARER_TOKEN", "from-env")
    with Simulator() as sim:
        assert call(sim.addresses[0], "GET", "/status", token="from-env")[0] == 200


def test_one_toolbox_per_address_routes_by_local_address() -> None:
    with running_simulator(toolboxes=3, token=TOKEN, mode="older", per="address", host="127.0.1.1") as sim:
        hosts = [a.rsplit(":", 1)[0] for a in sim.addresses]
        ports = {a.rsplit(":", 1)[1] for a in sim.addresses}
        assert hosts == ["127.0.1.1", "127.0.1.2", "127.0.1.3"] and len(ports) == 1
        assert call(sim.addresses[1], "POST", "/tools", DEPLOY)[0] == 201
        names = [
            [i["instance_name_on_toolbox"] for i in call(a, "GET", "/status")[1]["tool_instances"]]
            for a in sim.addresses
        ]
        assert names == [[], ["context7"], []]
        assert sim.counters(1)["POST /tools"] == 1 and "POST /tools" not in sim.counters(0)


def test_admin_path_needs_its_token_and_drives_faults() -> None:
    with running_simulator(token=TOKEN) as sim:
        a = sim.addresses[0]
        assert call(a, "GET", "/__sim/counters", headers={"X-Sim-Admin-Token": "no"})[0] == 403
        assert call(a, "GET", "/__sim/counters", token=TOKEN)[0] == 403  # the agent token is not the admin token
        call(a, "POST", "/tools", DEPLOY)
        sim.admin(0, "POST", "/__sim/faults", {"error_rate": {"*": 1.0}})
        assert call(a, "GET", "/status")[0] == 500
        sim.admin(0, "POST", "/__sim/clear")
        assert call(a, "GET", "/status")[0] == 200
        sim.admin(0, "POST", "/__sim/forget")
        assert call(a, "POST", "/tools/context7/stop")[0] == 404
        state = sim.admin(0, "GET", "/__sim/state")
        assert state["containers"][0]["managed"] is False and state["containers"][0]["state"] == "running"
        assert "A=1" not in json.dumps(state)  # env values (maybe secrets) are not served
        counters = sim.admin(0, "GET", "/__sim/counters")
        assert counters == {"POST /tools": 1, "GET /status": 2, "POST /tools/{name}/stop": 1}
        assert sim.sim.admin_token == ADMIN_TOKEN


def test_admin_seed_adds_running_managed_containers_without_counting_calls() -> None:
    with running_simulator(token=TOKEN, mode="older", start_delay=30.0) as sim:
        a = sim.addresses[0]
        seeded = [{"name": "s0", "image": "img:0", "instance_id": "id-0"}, {"name": "s1", "image": "img:1"}]
        assert sim.admin(0, "POST", "/__sim/seed", {"containers": seeded}) == {"success": True, "seeded": 2}
        items = call(a, "GET", "/status")[1]["tool_instances"]
        assert [(i["instance_name_on_toolbox"], i["account_tool_instance_id"], i["status"]) for i in items] == [
            ("s0", "id-0", "running"),
            ("s1", None, "running"),
        ]
        assert call(a, "POST", "/tools/s0/stop")[0] == 200  # managed: the agent knows the name
        with pytest.raises(urllib.error.HTTPError) as again:
            sim.admin(0, "POST", "/__sim/seed", {"containers": seeded[:1]})
        assert again.value.code == 409
        with pytest.raises(urllib.error.HTTPError) as bad:
            sim.admin(0, "POST", "/__sim/seed", {"containers": [{"name": "bad name"}]})
        assert bad.value.code == 400
        assert sim.counters(0) == {"GET /status": 1, "POST /tools/{name}/stop": 1}


def test_kind_shape_b_lists_host_containers_and_c_has_tools_status() -> None:
    with running_simulator(token=TOKEN, mode="kind", shape="b") as sim:
        a = sim.addresses[0]
        call(a, "POST", "/tools", DEPLOY)
        items = call(a, "GET", "/status")[1]["tool_instances"]
        assert [i["names"] for i in items] == [["/dtma_manager"], ["/agentopia_backend"], ["/context7"]]
        c_items = call(a, "GET", "/tools/status")[1]["tool_instances"]
        assert c_items[0]["ports"] == [{"IP": "0.0.0.0", "PrivatePort": 8080, "PublicPort": 31001, "Type": "tcp"}]
    with running_simulator(token=TOKEN, mode="kind", shape="c") as sim:
        assert call(sim.addresses[0], "GET", "/status") == (404, ERRORS["404_route"])
        assert call(sim.addresses[0], "GET", "/tools/status")[0] == 200


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_cli_sim_prints_addresses_answers_health_and_stops_on_signal(tmp_path: Path, signum: int) -> None:
    out = tmp_path / "addresses.json"
    env = {**os.environ, "BACKEND_TO_DTMA_API_KEY": TOKEN}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "reconciler",
            "sim",
            "--listen",
            "127.0.1.1:0",
            "--toolboxes",
            "3",
            "--addresses-json",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline().strip() for _ in range(3)]
        assert [ln.rsplit(":", 1)[0] for ln in lines] == ["127.0.1.1", "127.0.1.2", "127.0.1.3"]
        assert json.loads(out.read_text()) == lines
        for address in lines:
            assert call(address, "GET", "/health", token=None) == (200, "OK")
        proc.send_signal(signum)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]


def test_cli_sim_refuses_public_address() -> None:
    env = {**os.environ, "BACKEND_TO_DTMA_API_KEY": TOKEN}
    done = subprocess.run(
        [sys.executable, "-m", "reconciler", "sim", "--listen", "0.0.0.0:0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert done.returncode == 1
    assert "only loopback" in done.stderr


def _wait_for(cond: Any) -> None:
    deadline = time.monotonic() + 5
    while not cond():
        assert time.monotonic() < deadline, "the simulator never noted the request"
        time.sleep(0.002)  # waiting on the simulator's connection thread, with a deadline


def test_a_post_cut_short_between_headers_and_body_is_no_call() -> None:
    """http.client writes a request's headers and its body separately: a client killed in between leaves the
    agent headers and part of a body. No HTTP server hands such a request to the agent's routes, so the
    simulator does not count it as a call and creates nothing; its answers note it as cut short."""
    with running_simulator(token=TOKEN, mode="older") as sim:
        a = sim.addresses[0]
        host, port = a.rsplit(":", 1)
        body = json.dumps(DEPLOY).encode()
        head = (
            f"POST /tools HTTP/1.1\r\nHost: {a}\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        for sent in (head, head + body[: len(body) // 2]):
            with socket.create_connection((host, int(port)), timeout=5) as sock:
                sock.sendall(sent)
                sock.shutdown(socket.SHUT_WR)  # the client is gone: end of stream
                assert sock.recv(1024) == b""  # no answer, the connection is closed
        _wait_for(lambda: sim.sim.answers(0).get("POST /tools incomplete") == 2)
        assert sim.counters(0) == {}
        assert call(a, "GET", "/status")[1]["tool_instances"] == []
        assert call(a, "POST", "/tools", DEPLOY)[0] == 201
        assert call(a, "POST", "/tools", DEPLOY)[0] == 409
        assert sim.sim.answers(0) == {
            "POST /tools incomplete": 2,
            "GET /status 200": 1,
            "POST /tools 201": 1,
            "POST /tools 409": 1,
        }
        assert sim.admin(0, "GET", "/__sim/answers") == sim.sim.answers(0)
        assert sim.counters(0) == {"GET /status": 1, "POST /tools": 2}


def test_a_hang_can_hold_one_route_only() -> None:
    with running_simulator(token=TOKEN, mode="older") as sim:
        a = sim.addresses[0]
        sim.admin(0, "POST", "/__sim/faults", {"hang": True, "hang_routes": ["POST /tools"], "hang_max": 10})
        assert sim.admin(0, "GET", "/__sim/state")["faults"]["hang_routes"] == ["POST /tools"]
        got: list[int] = []
        poster = threading.Thread(target=lambda: got.append(call(a, "POST", "/tools", DEPLOY)[0]))
        poster.start()
        _wait_for(lambda: sim.counters(0).get("POST /tools") == 1)
        assert call(a, "GET", "/status")[1]["tool_instances"] == []  # listings are not held; the POST is
        assert got == []
        sim.sim.set_faults(0, hang=False)
        poster.join(timeout=5)
        assert got == [201]


def test_kind_agent_also_takes_docker_behind_its_back() -> None:
    with running_simulator(token=TOKEN, mode="kind", shape="b") as sim:
        a = sim.addresses[0]
        assert call(a, "POST", "/tools", DEPLOY)[0] == 201
        sim.admin(0, "POST", "/__sim/docker/run", {"name": "hand-made", "image": "example/hand-made:1"})
        sim.admin(0, "POST", "/__sim/docker/stop", {"name": "context7"})
        states = {i["names"][0]: i["state"] for i in call(a, "GET", "/status")[1]["tool_instances"]}
        assert states["/context7"] == "exited" and states["/hand-made"] == "running"
        assert call(a, "POST", "/tools/context7/stop")[0] == 200  # the kind agent: stopping a stopped one is fine
        sim.admin(0, "POST", "/__sim/docker/rm", {"name": "hand-made"})
        names = [i["names"][0] for i in call(a, "GET", "/status")[1]["tool_instances"]]
        assert "/hand-made" not in names
        with pytest.raises(urllib.error.HTTPError) as gone:
            sim.admin(0, "POST", "/__sim/docker/rm", {"name": "hand-made"})
        assert gone.value.code == 404


def test_stopping_closes_kept_alive_connections_and_logs_nothing_after(caplog: pytest.LogCaptureFixture) -> None:
    """A stopped simulator leaves no connection thread answering (and logging) after its owner has ended."""
    caplog.set_level(logging.DEBUG, logger="reconciler.simulator")
    with running_simulator() as sim:
        host, port = sim.addresses[0].rsplit(":", 1)
        conn = socket.create_connection((host, int(port)), timeout=5)
        conn.sendall(f"GET /status HTTP/1.1\r\nHost: {host}\r\nConnection: keep-alive\r\n\r\n".encode())
        assert conn.recv(4096).startswith(b"HTTP/1.1 200")
    caplog.clear()
    try:
        try:
            data = conn.recv(4096)
        except ConnectionResetError:
            data = b""  # the peer is gone: just as good
        assert data == b""  # closed by stop(); before, this waited out the 5 s timeout (TimeoutError)
    finally:
        conn.close()
    assert not [r for r in caplog.records if r.name.startswith("reconciler.simulator")]
