"""plan/apply end to end against what real DTMA agents do: the real command, the simulator (and, for the
echoing agent, a small loopback server of this test's own), SQLite and PostgreSQL."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.e2e.conftest import CANARY, World, all_containers, kinds_of, require_every_part, server, steps_of
from tests.e2e.test_plan_apply import _dump_postgres

require_every_part()

SECRET_ENV = {"API_KEY": {"secretFromEnv": "CANARY_VAR"}}


def _rows(w: World) -> list[dict[str, Any]]:
    status = json.loads(w.cli("status", "--format", "json").stdout or "{}")
    out: list[dict[str, Any]] = []
    for env in status.get("environments", []) if isinstance(status, dict) else status:
        out.extend(env.get("servers", []))
    return out


def test_one_stop_against_an_agent_answering_500_makes_at_most_3_calls(
    world_factory: Callable[..., World],
) -> None:
    w = world_factory(1)
    w.write({"tb0": [server("srv-a")]})
    assert w.cli("apply", str(w.manifests)).returncode == 0
    w.sim.sim.set_faults(0, error_rate={"POST /tools/{name}/stop": 1.0})
    w.write({"tb0": [server("srv-a", state="stopped")]})
    done = w.cli("apply", str(w.manifests))
    assert done.returncode in (1, 4), done.stdout + done.stderr
    assert w.sim.counters(0)["POST /tools/{name}/stop"] <= 3


def test_exited_container_gets_a_start_only_and_a_stopped_server_comes_back_with_start(
    world_factory: Callable[..., World],
) -> None:
    w = world_factory(1)
    w.write({"tb0": [server("srv-a"), server("srv-b")]})
    assert w.cli("apply", str(w.manifests)).returncode == 0
    # docker stop behind the reconciler's back: the repair sends no stop, one start
    w.sim.admin(0, "POST", "/__sim/exit-after", {"name": "srv-a", "seconds": 0})
    assert steps_of(w.plan_json()) == [("tb0", "srv-a", "restart")]
    done = w.cli("apply", str(w.manifests))
    assert done.returncode == 0, done.stdout + done.stderr
    counters = w.sim.counters(0)
    assert counters.get("POST /tools/{name}/stop", 0) == 0 and counters["POST /tools/{name}/start"] == 1
    assert all_containers(w, 0)["srv-a"]["state"] == "running"
    # stopped on purpose through the manifest, then wanted running again: a start, counted as one
    w.write({"tb0": [server("srv-a"), server("srv-b", state="stopped")]})
    assert w.cli("apply", str(w.manifests)).returncode == 0
    w.write({"tb0": [server("srv-a"), server("srv-b")]})
    plan = w.plan_json()
    assert steps_of(plan) == [("tb0", "srv-b", "start")]
    assert (plan["summary"]["start"], plan["summary"]["restart"]) == (1, 0)
    assert "1 to start" in w.cli("plan", str(w.manifests)).stdout
    assert w.cli("plan", str(w.manifests), "--detailed-exitcode").returncode == 2  # a start is not destructive
    assert w.cli("apply", str(w.manifests)).returncode == 0
    assert all_containers(w, 0)["srv-b"]["state"] == "running"


def test_a_deploy_whose_pull_outlasts_the_read_timeout_is_sent_once(world_factory: Callable[..., World]) -> None:
    w = world_factory(1)
    # the agent answers POST /tools only after "pulling" for 2 s; the client gives up reading after 0.5 s
    w.sim.sim.set_faults(0, hang=True, hang_routes=["POST /tools"], hang_max=2.0)
    w.extra_env["RECONCILER_DTMA_READ_TIMEOUT"] = "0.5"
    w.extra_env["RECONCILER_DTMA_DEPLOY_TIMEOUT"] = "0.5"
    w.write({"tb0": [server("srv-a")]})
    done = w.cli("apply", str(w.manifests), timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert w.sim.counters(0)["POST /tools"] == 1
    assert all_containers(w, 0)["srv-a"]["state"] == "running"
    w.sim.sim.clear_faults(0)
    assert w.cli("plan", str(w.manifests), "--detailed-exitcode").returncode == 0


def test_a_forgetful_agent_never_gets_a_row_dropped(world_factory: Callable[..., World]) -> None:
    w = world_factory(1)
    w.write({"tb0": [server("srv-a"), server("srv-b")]})
    assert w.cli("apply", str(w.manifests)).returncode == 0
    w.sim.admin(0, "POST", "/__sim/forget")  # the agent restarted: its listing no longer shows them
    w.write({"tb0": [server("srv-a")]}, prune=True)
    done = w.cli("apply", str(w.manifests))
    assert done.returncode != 0
    assert "srv-b" in all_containers(w, 0)  # the container still runs...
    assert "srv-b" in w.cli("status", "--format", "json").stdout  # ...and its row is kept


def test_two_servers_sharing_an_image_are_a_plan_error(world_factory: Callable[..., World]) -> None:
    w = world_factory(1)
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
        assert "[redacted]" in applied.stdout + applied.stderr
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
