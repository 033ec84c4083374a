"""Onboarding a fleet that already runs: adoption (and import) end to end, on the simulator with containers
deployed by hand through the agent (as Agentopia's UI does), with SQLite and PostgreSQL."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import CANARY, TOKEN, World, kinds_of, server, steps_of
from tests.sim_helpers import call

SECRET_ENV = {"API_KEY": {"secretFromEnv": "CANARY_VAR"}, "LOG_LEVEL": "info"}


def hand_deploy(w: World, index: int, name: str, image: str, *, env: list[str] | None = None,
                ports: dict[str, Any] | None = None) -> str:  # fmt: skip
    """A deploy sent to the agent by hand (Agentopia's UI does this): the agent manages it under an instance
    id no row of the reconciler's names."""
    instance_id = str(uuid.uuid4())
    override: dict[str, Any] = {"Env": env or []}
    if ports:
        override["HostConfig"] = {"PortBindings": ports}
    status, body = call(w.sim.addresses[index], "POST", "/tools", token=TOKEN, body={
        "dockerImageUrl": image, "instanceNameOnToolbox": name, "accountToolInstanceId": instance_id,
        "baseConfigOverrideJson": override,
    })  # fmt: skip
    assert status == 201, body
    return instance_id


def agentopia_row(w: World, instance_id: str, name: str, image: str, env: list[str]) -> None:
    """The row Agentopia's backend writes for a server deployed through its UI: not the reconciler's."""
    with sqlite3.connect(w.tmp / "state.db") as db:
        (env_id,) = db.execute("SELECT id FROM account_tool_environments WHERE name = 'tb0'").fetchone()
        catalog = str(uuid.uuid4())
        db.execute("INSERT INTO tool_catalog (id, tool_name, name, package_identifier, docker_image_url) "
                   "VALUES (?, ?, ?, ?, ?)", (catalog, f"ui-{name}", f"UI {name}", image, image))  # fmt: skip
        db.execute(
            "INSERT INTO account_tool_instances (id, account_tool_environment_id, tool_catalog_id, "
            "instance_name_on_toolbox, status_on_toolbox, base_config_override_json, mcp_server_type, "
            "mcp_transport_type, mcp_endpoint_path, mcp_server_capabilities) VALUES (?, ?, ?, ?, 'active', ?, "
            "'mcp_server', 'websocket', '/ws', '[\"tools\"]')",
            (instance_id, env_id, catalog, name, json.dumps({"Env": env})),
        )


def test_adoption_takes_running_containers_under_management_without_a_deploy(
    world_factory: Callable[..., World],
) -> None:
    w = world_factory(1)
    hand_deploy(w, 0, "srv-a", "ghcr.io/acme/srv-a:1.0.0")
    hand_deploy(w, 0, "srv-b", "ghcr.io/acme/srv-b:1.0.0")
    hand_deploy(w, 0, "srv-c", "ghcr.io/acme/srv-c:0.9.0")  # the manifest declares another image
    deploys = w.sim.counters(0).get("POST /tools", 0)
    w.write({"tb0": [server("srv-a"), server("srv-b"), server("srv-c")]})

    # adoption off: three conflicts, nothing planned, the plan is incomplete
    plan = w.plan_json(code=1)
    assert steps_of(plan) == [] and [k for k in kinds_of(plan) if k[2] == "conflict"] == [
        ("tb0", "srv-a", "conflict"), ("tb0", "srv-b", "conflict"), ("tb0", "srv-c", "conflict"),
    ]  # fmt: skip

    # --adopt: the two matching containers are adopted; the image mismatch stays a conflict saying so
    plan = w.plan_json("--adopt", code=1)
    assert steps_of(plan) == [("tb0", "srv-a", "adopt"), ("tb0", "srv-b", "adopt")]
    assert plan["summary"]["adopt"] == 2 and plan["summary"]["destructive"] == 0
    mismatch = [n["message"] for n in plan["notices"] if n["server"] == "srv-c"]
    assert len(mismatch) == 1 and "image mismatch" in mismatch[0] and "srv-c:0.9.0" in mismatch[0]
    # reviewed and saved with --adopt: the saved plan carries the policy, and applies as reviewed
    assert w.cli("plan", str(w.manifests), "--adopt", "--allow-incomplete", "--out", "plan.json").returncode == 0
    assert w.cli("apply", "plan.json", "--adopt").returncode == 1  # the policy is the reviewed one: refused
    done = w.cli("apply", "plan.json")
    assert done.returncode == 4, done.stdout + done.stderr  # steps done while srv-c stays unsettled
    assert "<= adopt srv-a" in done.stdout

    # policy adopt: true in the manifest, the mismatch fixed by declaring what runs: one more adopt, converged
    w.write({"tb0": [server("srv-a"), server("srv-b"), server("srv-c", image="ghcr.io/acme/srv-c:0.9.0")]})
    assert steps_of(w.plan_json(code=1)) == []  # adoption off again: srv-c is a conflict, a and b are managed
    manifest = w.manifests / "tb0.yaml"
    text = manifest.read_text()
    manifest.write_text(text.replace("  allowEmpty: false\n", "  allowEmpty: false\n  adopt: true\n"))
    assert steps_of(w.plan_json()) == [("tb0", "srv-c", "adopt")]
    done = w.cli("apply", str(w.manifests))
    assert done.returncode == 0, done.stdout + done.stderr
    assert w.cli("plan", str(w.manifests), "--detailed-exitcode").returncode == 0

    # zero deploys, zero deletes, nothing stopped: every container is the one deployed by hand
    counters = w.sim.counters(0)
    assert counters.get("POST /tools", 0) == deploys
    assert not [k for k in counters if k.startswith(("DELETE", "POST /tools/"))], counters
    runs = json.loads(w.cli("journal", "--format", "json").stdout)
    adopted = sorted(s["server"] for r in runs for s in r.get("steps", []) if s["action"] == "adopt")
    assert adopted == ["srv-a", "srv-b", "srv-c"]
    assert all(s["outcome"] == "ok" for r in runs for s in r.get("steps", []) if s["action"] == "adopt")


@pytest.mark.parametrize("world_factory", ["sqlite"], indirect=True)  # the stores' reads are tested on both
def test_import_writes_a_manifest_that_validates_and_plans_only_adoptions(
    world_factory: Callable[..., World],
) -> None:
    w = world_factory(2)
    w.write({"tb0": [server("srv-a", env=SECRET_ENV, hostPort=31080)]})
    assert w.cli("apply", str(w.manifests)).returncode == 0
    h1 = hand_deploy(w, 0, "srv-h1", "ghcr.io/acme/srv-h1:2.1.0", env=["GITHUB_TOKEN=hand-secret-0123"],
                     ports={"8080/tcp": [{"HostPort": "31081"}]})  # fmt: skip
    agentopia_row(w, h1, "srv-h1", "ghcr.io/acme/srv-h1:2.1.0", ["GITHUB_TOKEN=hand-secret-0123", "REGION=eu"])
    hand_deploy(w, 0, "srv-h2", "ghcr.io/acme/srv-h2:1.0.0")
    deploys = w.sim.counters(0).get("POST /tools", 0)
    imported = w.tmp / "imported"

    done = w.cli("import", "--env", "tb0", "--out", str(imported))
    assert done.returncode == 0, done.stderr
    text = (imported / "tb0.yaml").read_text()
    assert CANARY not in text + done.stdout + done.stderr and "hand-secret" not in text
    doc = yaml.safe_load(text)
    servers = {s["name"]: s for s in doc["servers"]}
    assert sorted(servers) == ["srv-a", "srv-h1", "srv-h2"]
    assert servers["srv-a"]["env"] == {"API_KEY": {"secretFromEnv": "SRV_A_API_KEY"}, "LOG_LEVEL": "info"}
    assert (servers["srv-a"]["transport"], servers["srv-a"]["hostPort"]) == ("sse", 31080)
    assert (servers["srv-h1"]["port"], servers["srv-h1"]["hostPort"]) == (8080, 31081)
    # the row Agentopia wrote: env (the token as a reference), transport, endpoint and capabilities
    assert servers["srv-h1"]["env"] == {"GITHUB_TOKEN": {"secretFromEnv": "SRV_H1_GITHUB_TOKEN"}, "REGION": "eu"}
    assert (servers["srv-h1"]["transport"], servers["srv-h1"]["endpoint"]) == ("websocket", "/ws")
    assert servers["srv-h1"]["capabilities"] == ["tools"] and "transport" in done.stderr  # srv-h2's is guessed
    assert "SRV_A_API_KEY" in done.stderr
    again = w.cli("import", "--env", "tb0", "--out", str(imported))
    assert again.returncode == 1 and "--force" in again.stderr and (imported / "tb0.yaml").read_text() == text
    blocker = w.tmp / "a-file"  # an --out that cannot be made: an error naming it, no traceback
    blocker.write_text("")
    done = w.cli("import", "--env", "tb0", "--out", str(blocker / "sub"))
    assert done.returncode == 1 and f"--out {blocker / 'sub'}: cannot write" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert w.cli("validate", str(imported)).returncode == 0

    # the same toolbox planned from the imported manifest: nothing to create, delete or replace
    w.extra_env.update({"SRV_A_API_KEY": CANARY, "SRV_H1_GITHUB_TOKEN": "hand-secret-0123"})
    done = w.cli("plan", str(imported), "--format", "json")
    assert done.returncode == 1  # the two hand-deployed containers are conflicts until adopted
    assert steps_of(json.loads(done.stdout)) == []
    done = w.cli("plan", str(imported), "--format", "json", "--adopt")
    assert done.returncode == 0, done.stderr
    assert steps_of(json.loads(done.stdout)) == [("tb0", "srv-h1", "adopt"), ("tb0", "srv-h2", "adopt")]
    done = w.cli("apply", str(imported), "--adopt")
    assert done.returncode == 0, done.stdout + done.stderr
    assert w.cli("plan", str(imported), "--detailed-exitcode").returncode == 0
    assert w.sim.counters(0).get("POST /tools", 0) == deploys  # nothing deployed, nothing recreated

    # an unreachable toolbox is refused, and nothing is written
    w.sim.sim.set_faults(1, drop=True)
    done = w.cli("import", "--env", "tb1", "--out", str(imported))
    assert done.returncode == 1 and "nothing written" in done.stderr and not (imported / "tb1.yaml").exists()


@pytest.mark.parametrize("world_factory", ["sqlite"], indirect=True)
def test_import_says_why_a_running_container_could_not_be_written(world_factory: Callable[..., World]) -> None:
    w = world_factory(1, mode="older")  # the older agent's listing shows no image
    hand_deploy(w, 0, "oldie", "ghcr.io/acme/oldie:1.0.0")
    done = w.cli("import", "--env", "tb0")
    assert done.returncode == 1 and done.stdout == ""
    assert "oldie left out: neither the listing nor a row shows its image" in done.stderr, done.stderr
    assert "nothing runs" not in done.stderr
