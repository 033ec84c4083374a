"""plan/apply end to end against what real DTMA agents do: the real command, the simulator (and, for the
echoing agent, a small loopback server of this test's own), SQLite and PostgreSQL."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.e2e.conftest import CANARY, World, all_containers, kinds_of, server, steps_of
from tests.e2e.test_plan_apply import _dump_postgres

SECRET_ENV = {"API_KEY": {"secretFromEnv": "CANARY_VAR"}}


def test_one_stop_against_an_agent_answering_500_makes_at_most_3_calls(
    world_factory: Callable[..., World],
) -> None:
    w = world_factory(1, mode="newer")
    w.write({"tb0": [server("srv-a")]})
    assert w.cli("apply", str(w.manifests)).returncode == 0
    w.sim.sim.set_faults(0, error_rate={"POST /tools/{name}/stop": 1.0})
    w.write({"tb0": [server("srv-a", state="stopped")]})
    done = w.cli("apply", str(w.manifests))
    assert done.returncode in (1, 4), done.stdout + done.stderr
    assert w.sim.counters(0)["POST /tools/{name}/stop"] <= 3


@pytest.mark.parametrize("mode", ["newer", "older"])
def test_exited_container_gets_a_start_only_and_a_stopped_server_comes_back_with_start(
    world_factory: Callable[..., World], mode: str
) -> None:
    w = world_factory(1, mode=mode)
    w.write({"tb0": [server("srv-a"), server("srv-b")]})
    assert w.cli("apply", str(w.manifests)).returncode == 0
    # docker stop behind the reconciler's back: the repair sends no stop (the agent would answer 304), one start
    w.sim.sim.docker_stop(0, "srv-a")
    assert steps_of(w.plan_json()) == [("tb0", "srv-a", "restart")]
    done = w.cli("apply", str(w.manifests))
    assert done.returncode == 0, done.stdout + done.stderr
    counters = w.sim.counters(0)
    assert counters.get("POST /tools/{name}/stop", 0) == 0 and counters["POST /tools/{name}/start"] == 1
    assert all_containers(w, 0)["srv-a"]["state"] == "running"
    assert w.cli("plan", str(w.manifests), "--detailed-exitcode").returncode == 0
    # stopped on purpose through the manifest, then wanted running again: a start, counted as one
    w.write({"tb0": [server("srv-a"), server("srv-b", state="stopped")]})
    assert w.cli("apply", str(w.manifests)).returncode == 0
    assert "tb0/srv-b: desired=stopped" in w.cli("status").stdout
    w.write({"tb0": [server("srv-a"), server("srv-b")]})
    plan = w.plan_json()
    assert steps_of(plan) == [("tb0", "srv-b", "start")]
    assert (plan["summary"]["start"], plan["summary"]["restart"]) == (1, 0)
    assert "1 to start" in w.cli("plan", str(w.manifests)).stdout
    assert w.cli("plan", str(w.manifests), "--detailed-exitcode").returncode == 2  # a start is not destructive
    assert w.cli("apply", str(w.manifests)).returncode == 0
    assert all_containers(w, 0)["srv-b"]["state"] == "running"


def test_a_deploy_whose_pull_outlasts_the_deploy_timeout_is_sent_once(world_factory: Callable[..., World]) -> None:
    w = world_factory(1, mode="newer")
    # the agent answers POST /tools only after pulling for 2 s; the client gives up waiting after 0.5 s
    w.sim.admin(0, "POST", "/__sim/pull-delay", {"seconds": 2.0})
    w.extra_env["RECONCILER_DTMA_DEPLOY_TIMEOUT"] = "0.5"
    w.write({"tb0": [server("srv-a")]})
    done = w.cli("apply", str(w.manifests), timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert w.sim.counters(0)["POST /tools"] == 1
    assert all_containers(w, 0)["srv-a"]["state"] == "running"
    assert w.cli("plan", str(w.manifests), "--detailed-exitcode").returncode == 0


def test_a_name_held_after_docker_rm_gives_one_notice_and_no_post_each_run(
    world_factory: Callable[..., World],
) -> None:
    w = world_factory(1, mode="newer")
    w.write({"tb0": [server("srv-a")]})
    assert w.cli("apply", str(w.manifests)).returncode == 0
    w.sim.sim.docker_rm(0, "srv-a")  # behind the agent's back: it keeps the name
    assert steps_of(w.plan_json()) == [("tb0", "srv-a", "create")]
    first = w.cli("apply", str(w.manifests))
    assert first.returncode != 0
    assert "restart the DTMA agent on tb0 to release the name" in first.stdout + first.stderr
    posts = w.sim.counters(0)["POST /tools"]
    for _ in range(2):  # later runs hold the create back: no POST, the same one notice
        w.cli("apply", str(w.manifests))
    assert w.sim.counters(0)["POST /tools"] == posts
    plan = w.plan_json(code=1)  # incomplete: the held name cannot be settled now
    assert steps_of(plan) == []
    held = [n for n in plan["notices"] if n["kind"] == "name-held"]
    assert len(held) == 1 and "restart the DTMA agent on tb0" in held[0]["message"]


def test_a_held_name_is_tried_again_after_the_hold_and_created_once_the_agent_restarted(
    world_factory: Callable[..., World],
) -> None:
    w = world_factory(1, mode="newer")
    w.write({"tb0": [server("srv-a")]})
    assert w.cli("apply", str(w.manifests)).returncode == 0
    w.sim.sim.docker_rm(0, "srv-a")  # behind the agent's back: it keeps the name
    assert w.cli("apply", str(w.manifests)).returncode != 0
    posts = w.sim.counters(0)["POST /tools"]
    w.cli("apply", str(w.manifests))  # within the default hold (600 s): held back
    assert w.sim.counters(0)["POST /tools"] == posts
    # A hold of 1 ms has expired by the time the next process reads the row: the create is tried once more.
    w.extra_env["RECONCILER_BLOCKED_RETRY_AFTER"] = "0.001"
    assert steps_of(w.plan_json()) == [("tb0", "srv-a", "create")]
    again = w.cli("apply", str(w.manifests))
    assert again.returncode != 0 and "release the name" in again.stdout + again.stderr
    assert w.sim.counters(0)["POST /tools"] == posts + 1
    w.sim.admin(0, "POST", "/__sim/restart-agent", {})  # the fix the notice names
    done = w.cli("apply", str(w.manifests))
    assert done.returncode == 0, done.stdout + done.stderr
    assert w.sim.counters(0)["POST /tools"] == posts + 2
    assert all_containers(w, 0)["srv-a"]["state"] == "running"
    assert w.cli("plan", str(w.manifests), "--detailed-exitcode").returncode == 0


@pytest.mark.parametrize("mode", ["newer", "older"])
def test_a_forgetful_agent_never_gets_a_row_dropped(world_factory: Callable[..., World], mode: str) -> None:
    w = world_factory(1, mode=mode)
    w.write({"tb0": [server("srv-a"), server("srv-b")]})
    assert w.cli("apply", str(w.manifests)).returncode == 0
    w.sim.sim.restart_agent(0)  # it forgets the names it managed; the containers keep running
    w.write({"tb0": [server("srv-a")]}, prune=True)
    done = w.cli("apply", str(w.manifests))
    assert done.returncode != 0
    assert "srv-b" in all_containers(w, 0)  # the container still runs...
    assert "srv-b" in w.cli("status", "--format", "json").stdout  # ...and its row is kept


def test_the_older_agent_after_a_restart_gets_no_create_loop(world_factory: Callable[..., World]) -> None:
    w = world_factory(1, mode="older")
    w.write({"tb0": [server("srv-a"), server("srv-b"), server("srv-c")]})
    assert w.cli("apply", str(w.manifests)).returncode == 0
    w.sim.sim.restart_agent(0)  # its listing is now empty while every container keeps running
    first = w.cli("apply", str(w.manifests))
    assert first.returncode != 0
    # The creates already in flight (RECONCILER_DTMA_DEPLOY_CONCURRENCY, 3) met Docker's name conflict at
    # once; none was sent after the first answer.
    sent = w.sim.counters(0)["POST /tools"]
    assert 3 + 1 <= sent <= 3 + 3
    assert "forgot its containers" in first.stdout + first.stderr
    w.cli("apply", str(w.manifests))
    assert w.sim.counters(0)["POST /tools"] == sent  # held back, not retried every run
    plan = w.plan_json(code=1)  # incomplete: the forgotten servers cannot be reconciled
    forgotten = [n for n in plan["notices"] if n["kind"] == "forgotten"]
    assert len(forgotten) == 1 and "tb0" in forgotten[0]["message"]
    status = w.cli("status", "--format", "json").stdout
    assert all(name in status for name in ("srv-a", "srv-b", "srv-c"))


def test_the_older_agents_not_found_entry_is_reported_at_once(world_factory: Callable[..., World]) -> None:
    w = world_factory(1, mode="older")
    w.write({"tb0": [server("srv-a")]})
    assert w.cli("apply", str(w.manifests)).returncode == 0
    w.sim.sim.docker_rm(0, "srv-a")  # the older agent lists it as not_found from now on
    assert steps_of(w.plan_json()) == [("tb0", "srv-a", "create")]
    listings = w.sim.counters(0)["GET /status"]
    done = w.cli("apply", str(w.manifests), timeout=30)
    assert done.returncode != 0
    assert w.sim.counters(0)["GET /status"] - listings < 10  # no 60 s of polling
    assert "restart the DTMA agent on tb0" in done.stdout + done.stderr


def test_an_unpublished_host_port_is_drift_with_its_cause(world_factory: Callable[..., World]) -> None:
    w = world_factory(1, mode="newer")
    w.sim.sim.set_image("ghcr.io/acme/srv-a:1.0.0", exposes=[])  # the image EXPOSEs nothing
    w.write({"tb0": [server("srv-a", hostPort=31001), server("srv-b", hostPort=31002)]})
    w.cli("apply", str(w.manifests))
    plan = w.plan_json(code=1)  # incomplete: srv-a cannot be settled now
    unpublished = [n for n in plan["notices"] if n["kind"] == "port-unpublished"]
    assert [n["server"] for n in unpublished] == ["srv-a"]
    assert "does not EXPOSE port 8080" in unpublished[0]["message"]
    assert steps_of(plan) == []
    assert w.cli("plan", str(w.manifests), "--detailed-exitcode").returncode == 1
    assert w.cli("plan", str(w.manifests), "--allow-incomplete").returncode == 0
    done = w.cli("apply", str(w.manifests))
    assert done.returncode == 1, done.stdout + done.stderr
    runs = sorted(json.loads(w.cli("journal", "--format", "json").stdout), key=lambda r: r["id"])
    applies = [r["outcome"] for r in runs if r["kind"] == "apply"]
    assert applies and "converged" not in applies and applies[-1] == "incomplete"


def test_host_address_is_sent_and_a_port_without_host_port_is_not_published(
    world_factory: Callable[..., World],
) -> None:
    w = world_factory(1, mode="newer")
    w.write({"tb0": [server("srv-a", hostPort=31001), server("srv-b", hostPort=31002, hostIp="127.0.0.1"),
                     server("srv-c")]})  # fmt: skip
    assert w.cli("apply", str(w.manifests)).returncode == 0
    bindings = {n: c["port_bindings"] for n, c in all_containers(w, 0).items() if n.startswith("srv-")}
    assert bindings["srv-a"] == {"8080/tcp": [{"HostPort": "31001", "HostIp": "0.0.0.0"}]}
    assert bindings["srv-b"] == {"8080/tcp": [{"HostPort": "31002", "HostIp": "127.0.0.1"}]}
    assert not bindings["srv-c"]  # no random port on every interface
    assert w.cli("plan", str(w.manifests), "--detailed-exitcode").returncode == 0
    # moving a server to another host address needs a new container
    w.write({"tb0": [server("srv-a", hostPort=31001, hostIp="127.0.0.1"), server("srv-b", hostPort=31002,
                     hostIp="127.0.0.1"), server("srv-c")]})  # fmt: skip
    plan = w.plan_json()
    assert steps_of(plan) == [("tb0", "srv-a", "replace")]
    assert {"field": "host_ip", "old": "0.0.0.0", "new": "127.0.0.1"} in plan["steps"][0]["changes"]


def test_a_toolbox_failing_mid_apply_skips_its_remaining_steps_only(world_factory: Callable[..., World]) -> None:
    w = world_factory(2, mode="newer")
    w.write({"tb0": [server("srv-a"), server("srv-b"), server("srv-c")], "tb1": [server("srv-d")]})
    w.extra_env["RECONCILER_DTMA_DEPLOY_TIMEOUT"] = "1"
    w.extra_env["RECONCILER_DTMA_DEPLOY_CONCURRENCY"] = "1"  # in order, so srv-b and srv-c are still to start
    w.sim.sim.set_faults(0, hang=True, hang_routes=["POST /tools"], hang_max=5.0)
    proc = w.popen("apply", str(w.manifests))
    try:
        # the first POST on tb0 reaches the agent and hangs; then tb0 goes away entirely
        deadline = time.monotonic() + 20
        while w.sim.counters(0).get("POST /tools", 0) < 1:
            assert time.monotonic() < deadline and proc.poll() is None, "the first deploy never arrived"
            time.sleep(0.01)
        w.sim.sim.set_faults(0, drop=True)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert w.sim.counters(0)["POST /tools"] == 1  # srv-b and srv-c were not tried
    assert (out + err).count("failed mid-apply") >= 2
    w.sim.sim.clear_faults(0)
    assert all_containers(w, 1)["srv-d"]["state"] == "running"


def test_two_servers_sharing_an_image_are_a_plan_error(world_factory: Callable[..., World]) -> None:
    w = world_factory(1, mode="newer")
    w.write({"tb0": [server("srv-a", image="ghcr.io/acme/same:1"), server("srv-b", image="ghcr.io/acme/same:1")]})
    done = w.cli("plan", str(w.manifests), "--format", "json")
    plan = json.loads(done.stdout)
    assert plan["errors"] and "share image ghcr.io/acme/same:1" in plan["errors"][0]
    assert ("tb0", "srv-a", "conflict") in kinds_of(plan)
    assert w.cli("apply", str(w.manifests)).returncode != 0
    assert w.sim.counters(0).get("POST /tools", 0) == 0


class _Echo(BaseHTTPRequestHandler):
    """An agent whose 500 answer echoes the request body (the secret env values of a deploy included)."""

    def _answer(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._answer(200, {"dtma_version": "echo", "tool_instances": []})

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        self._answer(500, {"success": False, "message": "Failed to deploy tool.", "error": f"bad body {raw}"})

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def _echoing_agent(host: str, port: int) -> Iterator[None]:
    httpd = ThreadingHTTPServer((host, port), _Echo)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_an_agent_echoing_the_secret_leaks_it_nowhere(world_factory: Callable[..., World]) -> None:
    w = world_factory(1)
    ip, port = w.sim.addresses[0].rsplit(":", 1)
    echo_ip = ip.rsplit(".", 1)[0] + ".200"
    assert (
        w.cli("db", "add-environment", "echo", "--address", echo_ip, "--database", w.database_url).returncode == 0
    )
    w.write({"echo": [server("srv-e", env=SECRET_ENV)]})
    with _echoing_agent(echo_ip, int(port)):
        applied = w.cli("apply", str(w.manifests))
        assert applied.returncode != 0
        assert "Failed to deploy tool" in applied.stdout + applied.stderr  # the agent's text is shown, redacted
        outputs = [applied.stdout, applied.stderr]
        outputs.append(w.cli("journal", "--format", "json").stdout)
        outputs.append(w.cli("status", "--format", "json").stdout)
        outputs.append(w.cli("run", str(w.manifests), "--once").stderr)
    assert not [o for o in outputs if CANARY in o]
    for f in w.tmp.rglob("*"):
        if f.is_file():
            assert CANARY.encode() not in f.read_bytes(), f
    if w.database_url.startswith("postgres"):
        assert CANARY not in _dump_postgres(w.database_url)
