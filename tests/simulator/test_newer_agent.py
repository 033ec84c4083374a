"""The simulator as the newer agent (``dtma-agent`` lineage), over real HTTP, against answers recorded from
the real agent on real Docker (tests/fixtures/dtma-samples/real-agent-answers.json)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from reconciler.simulator import Simulator, SimulatorError
from tests.sim_helpers import call, running_simulator

SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "dtma-samples"
REAL = json.loads((SAMPLES / "real-agent-answers.json").read_text())
ERRORS = json.loads((SAMPLES / "errors.json").read_text())


def recorded(request: str, status: int, name: str) -> dict[str, Any]:
    """The real agent's body for this call and status, with its container name replaced by ``name``."""
    for answer in REAL["answers"]:
        if answer["request"] == request and answer["status"] == status:
            text = json.dumps(answer["body"])
            for real_name in ("fetch", "time", "github", "slow2", "slow"):
                text = text.replace(f"'{real_name}'", f"'{name}'").replace(f'\\"/{real_name}\\"', f'\\"/{name}\\"')
            return dict(json.loads(text))
    raise AssertionError(f"no recorded answer for {request} {status}")


def deploy(name: str = "fetch", image: str = "mcp/fetch:1", ports: dict[str, Any] | None = None) -> dict[str, Any]:
    override: dict[str, Any] = {"Env": ["A=1"]}
    if ports is not None:
        override["HostConfig"] = {"PortBindings": ports}
    return {
        "dockerImageUrl": image,
        "instanceNameOnToolbox": name,
        "accountToolInstanceId": f"id-{name}",
        "baseConfigOverrideJson": override,
    }


@pytest.fixture
def newer() -> Any:
    with running_simulator(mode="newer") as sim:
        yield sim


def test_deploy_answers_201_like_the_real_agent(newer: Any) -> None:
    a = newer.addresses[0]
    newer.sim.set_image("mcp/fetch:1", exposes=[])
    status, body = call(a, "POST", "/tools", deploy(ports={"8080/tcp": [{"HostPort": "31001"}]}))
    sample = recorded("POST /tools", 201, "fetch")
    assert status == 201
    assert set(body) == set(sample) and set(body["data"]) == set(sample["data"])
    assert set(body["data"]["state"]) == set(sample["data"]["state"])
    assert body["message"] == sample["message"]
    assert body["data"]["ports"] == {}  # the image EXPOSEs nothing: nothing published, as recorded
    assert body["data"]["state"]["Status"] == "running" and body["data"]["state"]["Running"] is True
    assert len(body["data"]["container_id"]) == 64


def test_public_status_lists_every_container_without_a_token(newer: Any) -> None:
    a = newer.addresses[0]
    newer.sim.set_image("mcp/fetch:1", exposes=[])
    call(a, "POST", "/tools", deploy(ports={"8080/tcp": [{"HostPort": "31001"}]}))
    newer.sim.docker_run(0, "hand-made", "example/hand-made:1")
    status, body = call(a, "GET", "/status", token=None)
    assert status == 200
    sample = REAL["GET /status (public, no token checked; every container on the host)"]
    assert set(body) == set(sample)
    items = {i["names"][0]: i for i in body["tool_instances"]}
    assert set(items) == {"dtma_manager", "agentopia_backend", "fetch", "hand-made"}
    assert set(items["fetch"]) == set(sample["tool_instances"][0])
    assert "account_tool_instance_id" not in items["fetch"]
    assert items["fetch"]["ports"] == [] and items["fetch"]["state"] == "running"
    assert items["fetch"]["status"].startswith("Up ")
    assert call(a, "GET", "/status", token="wrong")[0] == 200  # no token is checked at all


def test_tools_status_needs_the_token_and_lists_managed_containers_with_ids(newer: Any) -> None:
    a = newer.addresses[0]
    call(a, "POST", "/tools", deploy(ports={"8080/tcp": [{"HostPort": "31001"}]}))
    newer.sim.docker_run(0, "hand-made")
    assert call(a, "GET", "/tools/status", token=None) == (401, ERRORS["401"])
    assert call(a, "GET", "/tools/status", token="wrong") == (403, ERRORS["403"])
    status, body = call(a, "GET", "/tools/status")
    assert status == 200
    assert [(i["instance_name_on_toolbox"], i["account_tool_instance_id"]) for i in body["tool_instances"]] == [
        ("fetch", "id-fetch")
    ]
    ports = body["tool_instances"][0]["ports"]
    assert {"IP": "0.0.0.0", "PrivatePort": 8080, "PublicPort": 31001, "Type": "tcp"} in ports
    assert {"IP": "::", "PrivatePort": 8080, "PublicPort": 31001, "Type": "tcp"} in ports


def test_a_binding_is_published_only_when_the_image_exposes_the_port(newer: Any) -> None:
    a = newer.addresses[0]
    newer.sim.set_image("quiet:1", exposes=[])
    newer.sim.set_image("loud:1", exposes=["8080"])
    call(a, "POST", "/tools", deploy("quiet", "quiet:1", {"8080/tcp": [{"HostPort": "31001"}]}))
    call(
        a, "POST", "/tools", deploy("loud", "loud:1", {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "31002"}]})
    )
    call(a, "POST", "/tools", deploy("other", "loud:1", {"9090/tcp": [{"HostPort": "31003"}]}))
    items = {
        i["instance_name_on_toolbox"]: i["ports"] for i in call(a, "GET", "/tools/status")[1]["tool_instances"]
    }
    assert items["quiet"] == []
    assert items["loud"] == [{"IP": "127.0.0.1", "PrivatePort": 8080, "PublicPort": 31002, "Type": "tcp"}]
    # 9090 is bound but not exposed: not published; 8080 is exposed but not bound: listed without a host port
    assert items["other"] == [{"PrivatePort": 8080, "Type": "tcp"}]


def test_a_binding_without_host_port_publishes_a_random_port_on_every_interface(newer: Any) -> None:
    a = newer.addresses[0]
    status, body = call(a, "POST", "/tools", deploy(ports={"8080/tcp": [{}]}))
    assert status == 201
    bound = body["data"]["ports"]["8080/tcp"]
    assert [b["HostIp"] for b in bound] == ["0.0.0.0", "::"]
    port = int(bound[0]["HostPort"])
    assert 32768 <= port <= 60999
    listed = call(a, "GET", "/status", token=None)[1]["tool_instances"]
    fetch = next(i for i in listed if i["names"] == ["fetch"])
    assert {"ip": "0.0.0.0", "private_port": 8080, "public_port": port, "type": "tcp"} in fetch["ports"]


def test_unknown_images_expose_what_they_are_bound_to_unless_told_otherwise() -> None:
    with running_simulator(mode="newer", unknown_images_expose="none") as sim:
        a = sim.addresses[0]
        body = call(a, "POST", "/tools", deploy(ports={"8080/tcp": [{"HostPort": "31001"}]}))[1]
        assert body["data"]["ports"] == {}
        sim.admin(0, "POST", "/__sim/images", {"image": "ctx:1", "exposes": ["8080/tcp"]})
        body = call(a, "POST", "/tools", deploy("ctx", "ctx:1", {"8080/tcp": [{"HostPort": "31002"}]}))[1]
        assert body["data"]["ports"]["8080/tcp"][0] == {"HostIp": "0.0.0.0", "HostPort": "31002"}
        assert sim.admin(0, "GET", "/__sim/images")["images"]["ctx:1"]["exposes"] == ["8080/tcp"]


def test_the_pull_delays_the_201_and_nothing_exists_until_it_ends() -> None:
    with running_simulator(mode="newer") as sim:
        a = sim.addresses[0]
        sim.sim.set_image("slow:1", pull_delay=0.5)
        got: list[int] = []
        poster = threading.Thread(
            target=lambda: got.append(call(a, "POST", "/tools", deploy("slow", "slow:1"))[0])
        )
        poster.start()
        deadline = time.monotonic() + 5
        while sim.counters(0).get("POST /tools") != 1:
            assert time.monotonic() < deadline
            time.sleep(0.002)  # waiting for the simulator's connection thread, with a deadline
        # still pulling: no answer, no container, and the name is not yet held
        assert got == []
        assert [i["names"] for i in call(a, "GET", "/status", token=None)[1]["tool_instances"]] == [
            ["dtma_manager"],
            ["agentopia_backend"],
        ]
        assert call(a, "GET", "/tools/status")[1]["tool_instances"] == []
        poster.join(timeout=10)
        assert got == [201]
        assert sim.sim.answers(0)["POST /tools 201"] == 1


def test_a_second_deploy_during_the_pull_hits_dockers_name_conflict() -> None:
    with running_simulator(mode="newer", pull_delay=0.3) as sim:
        a = sim.addresses[0]
        got: list[tuple[int, Any]] = []
        threads = [
            threading.Thread(target=lambda: got.append(call(a, "POST", "/tools", deploy()))) for _ in range(2)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=10)
        statuses = sorted(s for s, _ in got)
        assert statuses == [201, 500]
        failed = next(b for s, b in got if s == 500)
        assert failed["error"].startswith('(HTTP code 409) unexpected - Conflict. The container name "/fetch"')


def test_pull_delay_per_toolbox_by_admin_call() -> None:
    with running_simulator(mode="newer", toolboxes=2) as sim:
        assert sim.admin(1, "POST", "/__sim/pull-delay", {"seconds": 7}) == {"success": True, "pull_delay": 7.0}
        assert sim.sim.toolbox(1).pull_delay == 7.0 and sim.sim.toolbox(0).pull_delay == 0.0


def test_a_remembered_name_and_a_managed_port_give_409(newer: Any) -> None:
    a = newer.addresses[0]
    assert call(a, "POST", "/tools", deploy("github", ports={"8080/tcp": [{"HostPort": "31001"}]}))[0] == 201
    assert call(a, "POST", "/tools", deploy("github")) == (409, recorded("POST /tools", 409, "github"))
    clash = deploy("other", ports={"8080/tcp": [{"HostPort": "31001"}]})
    assert call(a, "POST", "/tools", clash) == (409, ERRORS["409_port"])


def test_a_name_taken_by_an_unmanaged_container_is_dockers_conflict_in_a_500(newer: Any) -> None:
    a = newer.addresses[0]
    newer.sim.docker_run(0, "slow", "example/hand-made:1")
    cid = newer.sim.toolbox(0).containers["slow"].container_id
    status, body = call(a, "POST", "/tools", deploy("slow"))
    expected = recorded("POST /tools", 500, "slow")
    expected["error"] = expected["error"].replace(
        "781ae4de82e26a716329dcf407aee2b4a1d345416a12387b49147f76a0f1276d", cid
    )
    assert (status, body) == (500, expected)


def test_a_host_port_held_by_an_unmanaged_container_fails_the_start_and_leaves_it_created(newer: Any) -> None:
    a = newer.addresses[0]
    status, body = call(a, "POST", "/tools", deploy(ports={"8080/tcp": [{"HostPort": "30000"}]}))
    assert status == 500 and "Bind for 0.0.0.0:30000 failed: port is already allocated" in body["error"]
    state = newer.admin(0, "GET", "/__sim/state")
    assert [(c["name"], c["state"], c["managed"]) for c in state["containers"]] == [("fetch", "created", False)]
    assert call(a, "POST", "/tools", deploy())[1]["error"].startswith("(HTTP code 409) unexpected - Conflict.")


def test_lifecycle_answers(newer: Any) -> None:
    a = newer.addresses[0]
    call(a, "POST", "/tools", deploy("time"))
    assert call(a, "POST", "/tools/time/start") == (
        200,
        {"success": True, "message": "Tool instance 'time' is already running."},
    )
    assert call(a, "POST", "/tools/time/stop") == (200, recorded("POST /tools/{name}/stop", 200, "time"))
    # the recorded answer: stop of an exited container is Docker's 304 wrapped in a 500
    assert call(a, "POST", "/tools/time/stop") == (500, recorded("POST /tools/{name}/stop", 500, "time"))
    assert call(a, "POST", "/tools/time/restart") == (404, {"error": "Not Found"})
    assert call(a, "POST", "/tools/time/start") == (
        200,
        {"success": True, "message": "Tool instance 'time' started successfully."},
    )
    assert call(a, "DELETE", "/tools/time") == (200, recorded("DELETE /tools/{name}", 200, "time"))
    assert call(a, "DELETE", "/tools/time") == (404, recorded("DELETE /tools/{name}", 404, "time"))


def test_a_container_stopped_behind_the_agents_back_gives_304_in_a_500(newer: Any) -> None:
    a = newer.addresses[0]
    call(a, "POST", "/tools", deploy("time"))
    newer.admin(0, "POST", "/__sim/docker/stop", {"name": "time"})
    assert call(a, "GET", "/tools/status")[1]["tool_instances"][0]["status"] == "exited"
    assert call(a, "POST", "/tools/time/stop") == (500, recorded("POST /tools/{name}/stop", 500, "time"))


def test_after_an_agent_restart_every_name_is_unknown_while_containers_run(newer: Any) -> None:
    a = newer.addresses[0]
    call(a, "POST", "/tools", deploy("time"))
    newer.admin(0, "POST", "/__sim/restart-agent")
    for method, path in (("POST", "/tools/time/stop"), ("POST", "/tools/time/start"), ("DELETE", "/tools/time")):
        assert call(a, method, path) == (404, recorded("POST /tools/{name}/stop", 404, "time"))
    assert call(a, "GET", "/tools/status")[1]["tool_instances"] == []
    public = [i["names"][0] for i in call(a, "GET", "/status", token=None)[1]["tool_instances"]]
    assert "time" in public  # Docker still runs it
    status, body = call(a, "POST", "/tools", deploy("time"))
    assert status == 500 and body["error"].startswith(
        '(HTTP code 409) unexpected - Conflict. The container name "/time"'
    )


def test_docker_rm_behind_the_agents_back_keeps_the_name_blocked_until_a_restart(newer: Any) -> None:
    a = newer.addresses[0]
    call(a, "POST", "/tools", deploy("github"))
    newer.admin(0, "POST", "/__sim/docker/rm", {"name": "github"})
    assert call(a, "GET", "/tools/status")[1]["tool_instances"] == []
    assert call(a, "POST", "/tools", deploy("github")) == (409, recorded("POST /tools", 409, "github"))
    gone = "(HTTP code 404) no such container - No such container: github "
    for method, path, verb in (
        ("DELETE", "/tools/github", "remove"),
        ("POST", "/tools/github/start", "start"),
        ("POST", "/tools/github/stop", "stop"),
    ):
        assert call(a, method, path) == (
            500,
            {"success": False, "message": f"Failed to {verb} tool instance 'github'.", "error": gone},
        )
    assert call(a, "POST", "/tools", deploy("github"))[0] == 409  # a DELETE did not clear it either
    newer.sim.restart_agent(0)
    assert call(a, "POST", "/tools", deploy("github"))[0] == 201


def test_docker_unreachable(newer: Any) -> None:
    a = newer.addresses[0]
    call(a, "POST", "/tools", deploy("time"))
    newer.admin(0, "POST", "/__sim/faults", {"docker_down": True})
    status, body = call(a, "GET", "/status", token=None)
    assert status == 200 and body["tool_instances"] == [{"error": "connect ENOENT /var/run/docker.sock"}]
    assert call(a, "GET", "/tools/status") == (
        500,
        {
            "success": False,
            "message": "Failed to retrieve container status.",
            "error": "connect ENOENT /var/run/docker.sock",
        },
    )
    status, body = call(a, "POST", "/tools", deploy("other"))
    assert status == 500 and body["error"] == "connect ENOENT /var/run/docker.sock"
    assert call(a, "POST", "/tools/time/stop")[0] == 500
    newer.admin(0, "POST", "/__sim/clear")
    assert call(a, "POST", "/tools/time/stop")[0] == 200


def test_a_missing_image_fails_the_pull_with_dockers_404_in_a_500(newer: Any) -> None:
    newer.sim.set_image("example/missing:1", missing=True)
    status, body = call(newer.addresses[0], "POST", "/tools", deploy("gone", "example/missing:1"))
    assert status == 500
    assert body["error"].startswith("(HTTP code 404) unexpected - pull access denied for example/missing")


def test_seeded_containers_are_managed(newer: Any) -> None:
    newer.admin(0, "POST", "/__sim/seed", {"containers": [{"name": "s0", "image": "img:0", "instance_id": "i0"}]})
    items = call(newer.addresses[0], "GET", "/tools/status")[1]["tool_instances"]
    assert [(i["instance_name_on_toolbox"], i["account_tool_instance_id"], i["status"]) for i in items] == [
        ("s0", "i0", "running")
    ]


def test_mode_and_shape_must_agree() -> None:
    with pytest.raises(SimulatorError, match="never serves listing shape 'a'"):
        Simulator(mode="newer", shape="a", token="t")
    with pytest.raises(SimulatorError, match="unknown simulator mode"):
        Simulator(mode="gentle", token="t")
    with running_simulator(modes={1: "older"}, mode="newer", toolboxes=2) as sim:
        assert [tb.mode for tb in sim.sim.toolboxes()] == ["newer", "older"]
        assert call(sim.addresses[0], "GET", "/status", token=None)[0] == 200
        assert call(sim.addresses[1], "GET", "/status", token=None)[0] == 401
        assert sim.admin(1, "GET", "/__sim/state")["mode"] == "older"


def test_cli_sim_mode_image_and_pull_delay_flags(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    out = tmp_path / "addresses.json"
    env = {**os.environ, "BACKEND_TO_DTMA_API_KEY": "tok"}
    argv = [sys.executable, "-m", "reconciler", "sim", "--listen", "127.0.0.1:0", "--mode", "newer"]
    argv += ["--image", "quiet:1=none", "--image", "loud:1=8080;pull=0.01", "--addresses-json", str(out)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        address = proc.stdout.readline().strip()
        bind = {"8080/tcp": [{"HostPort": "31001"}]}
        assert (
            call(address, "POST", "/tools", deploy("qq", "quiet:1", bind), token="tok")[1]["data"]["ports"] == {}
        )
        bind = {"8080/tcp": [{"HostPort": "31002"}]}
        ports = call(address, "POST", "/tools", deploy("ll", "loud:1", bind), token="tok")[1]["data"]["ports"]
        assert ports["8080/tcp"][0]["HostPort"] == "31002"
        assert call(address, "GET", "/status", token=None)[0] == 200  # the newer agent's public listing
        proc.terminate()
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("flag", "exposes", "delay", "missing"),
    [
        ("mcp/fetch:1=none", (), None, False),
        ("ctx:1=8080,9090/udp", ("8080/tcp", "9090/udp"), None, False),
        ("localhost:5000/slow:1=8080;pull=30", ("8080/tcp",), 30.0, False),
        ("gone:1=missing", None, None, True),
    ],
)
def test_image_flags(flag: str, exposes: Any, delay: Any, missing: bool) -> None:
    from reconciler.simulator.images import ImageSpec, parse_image_flag

    image, spec = parse_image_flag(flag)
    assert image == flag.partition("=")[0]
    assert spec == ImageSpec(exposes, delay, missing)


def test_cli_sim_refuses_a_bad_image_flag() -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "BACKEND_TO_DTMA_API_KEY": "tok"}
    done = subprocess.run(
        [sys.executable, "-m", "reconciler", "sim", "--listen", "127.0.0.1:0", "--image", "x:1=eighty"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert done.returncode == 1 and "ports must be numbers" in done.stderr and "Traceback" not in done.stderr


def test_tools_status_can_list_every_container_as_one_version_of_the_agent_does() -> None:
    with running_simulator(mode="newer", tools_status="all") as sim:
        a = sim.addresses[0]
        call(a, "POST", "/tools", deploy())
        sim.sim.docker_run(0, "hand-made")
        items = call(a, "GET", "/tools/status")[1]["tool_instances"]
        ids = {i["instance_name_on_toolbox"]: i["account_tool_instance_id"] for i in items}
        assert ids == {"dtma_manager": None, "agentopia_backend": None, "fetch": "id-fetch", "hand-made": None}
        sim.sim.restart_agent(0)
        items = call(a, "GET", "/tools/status")[1]["tool_instances"]
        assert {i["instance_name_on_toolbox"]: i["account_tool_instance_id"] for i in items}["fetch"] is None
    with pytest.raises(SimulatorError, match="managed or all"):
        Simulator(token="t", tools_status="some")
