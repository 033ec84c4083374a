"""The simulator as the older agent (``dtma/`` lineage), over real HTTP."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.sim_helpers import call, running_simulator

SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "dtma-samples"
ERRORS = json.loads((SAMPLES / "errors.json").read_text())
LISTING_A = json.loads((SAMPLES / "listing-a-status-v2.json").read_text())


def deploy(name: str) -> dict[str, Any]:
    return {"dockerImageUrl": "mcp/x:1", "instanceNameOnToolbox": name, "accountToolInstanceId": f"id-{name}"}


@pytest.fixture
def older() -> Any:
    with running_simulator(mode="older") as sim:
        yield sim


def listed(address: str) -> list[tuple[str, str, bool]]:
    body = call(address, "GET", "/status")[1]
    return [
        (i["instance_name_on_toolbox"], i["status"], i["container_id"] is not None) for i in body["tool_instances"]
    ]


def test_status_needs_the_token_and_lists_only_what_it_deployed(older: Any) -> None:
    a = older.addresses[0]
    assert call(a, "GET", "/status", token=None) == (401, ERRORS["401"])
    assert call(a, "GET", "/status", token="wrong") == (403, ERRORS["403"])
    assert call(a, "POST", "/tools", deploy("ctx"))[0] == 201
    older.sim.docker_run(0, "hand-made")
    status, body = call(a, "GET", "/status")
    assert status == 200 and set(body) == set(LISTING_A)
    assert body["tool_instances"] == [
        {
            "account_tool_instance_id": "id-ctx",
            "instance_name_on_toolbox": "ctx",
            "status": "running",
            "container_id": older.sim.toolbox(0).containers["ctx"].container_id,
        }
    ]
    assert call(a, "GET", "/tools/status") == (404, ERRORS["404_route"])  # no such route in this lineage


def test_stop_of_a_stopped_container_is_a_bare_304(older: Any) -> None:
    a = older.addresses[0]
    call(a, "POST", "/tools", deploy("ctx"))
    status, body = call(a, "POST", "/tools/ctx/stop")
    assert status == 200 and body["message"] == "Tool instance 'ctx' stopped."
    assert body["data"]["state"]["Status"] == "exited"
    assert call(a, "POST", "/tools/ctx/stop") == (304, None)
    assert sim_answers(older) == {
        "POST /tools 201": 1,
        "POST /tools/{name}/stop 200": 1,
        "POST /tools/{name}/stop 304": 1,
    }
    status, body = call(a, "POST", "/tools/ctx/start")
    assert status == 200 and body["message"] == "Tool instance 'ctx' started."
    status, body = call(a, "POST", "/tools/ctx/start")
    assert status == 200 and body["message"] == "Tool instance 'ctx' is already running."


def sim_answers(sim: Any) -> dict[str, int]:
    return dict(sim.sim.answers(0))


def test_docker_rm_behind_its_back_leaves_the_name_listed_not_found(older: Any) -> None:
    a = older.addresses[0]
    call(a, "POST", "/tools", deploy("ctx"))
    older.sim.docker_rm(0, "ctx")
    assert listed(a) == [("ctx", "not_found", False)]
    gone = "(HTTP code 404) no such container - No such container: ctx "
    assert call(a, "POST", "/tools/ctx/start") == (
        404,
        {"success": False, "message": "Failed to start tool instance 'ctx'.", "error": gone},
    )
    assert call(a, "POST", "/tools/ctx/stop") == (
        404,
        {"success": False, "message": "Failed to stop tool instance 'ctx'.", "error": gone},
    )
    assert call(a, "DELETE", "/tools/ctx") == (
        500,
        {"success": False, "message": "Failed to remove tool instance 'ctx'.", "error": gone},
    )
    assert call(a, "POST", "/tools", deploy("ctx")) == (
        409,
        {"success": False, "error": "Instance with name 'ctx' already exists."},
    )


def test_after_an_agent_restart_the_listing_is_empty_and_a_create_is_dockers_conflict(older: Any) -> None:
    a = older.addresses[0]
    call(a, "POST", "/tools", deploy("ctx"))
    older.admin(0, "POST", "/__sim/restart-agent")
    assert listed(a) == []
    assert older.admin(0, "GET", "/__sim/state")["containers"][0]["state"] == "running"  # still running
    status, body = call(a, "POST", "/tools", deploy("ctx"))
    assert status == 500 and body["message"] == "Failed to deploy tool 'ctx'."
    assert body["error"].startswith(
        '(HTTP code 409) unexpected - Conflict. The container name "/ctx" is already in use'
    )
    assert call(a, "POST", "/tools/ctx/stop") == (
        404,
        {"success": False, "error": "Tool instance 'ctx' not found or not managed by this DTMA."},
    )


def test_docker_unreachable_lists_error_inspecting(older: Any) -> None:
    a = older.addresses[0]
    call(a, "POST", "/tools", deploy("ctx"))
    older.sim.set_faults(0, docker_down=True)
    assert listed(a) == [("ctx", "error_inspecting", False)]
    assert call(a, "POST", "/tools/ctx/stop")[0] == 500


def test_a_shape_a_without_mode_is_the_older_lineage_when_the_default_is_real() -> None:
    from reconciler.simulator.modes import resolve_mode

    assert resolve_mode(None, "a", default="newer") == ("older", "a")
    assert resolve_mode(None, "c", default="newer") == ("newer", "c")
    assert resolve_mode(None, None, default="newer") == ("newer", "b")
    assert resolve_mode(None, "c", default="kind") == ("kind", "c")
    assert resolve_mode("kind", None) == ("kind", "a")
