"""The status page and its JSON API, served by a real daemon on the simulator (real HTTP, real SQLite)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import jsonschema
import pytest
import yaml

from reconciler.adapters.http_status import StatusServer
from reconciler.app.daemon import Daemon
from reconciler.app.serving import serve
from reconciler.app.stores import open_store
from reconciler.presentation.status_site import status_pages
from reconciler.resources import schema_path
from tests.app.daemon.conftest import CANARY, TOKEN, DaemonWorld, server

SCHEMA = json.loads(schema_path("status-api.v1.schema.json").read_text())
SECRET_ENV = {"API_KEY": {"secretFromEnv": "CANARY_VAR"}}
HOSTILE = "<script>alert(1)</script>"  # a toolbox's name (manifests refuse control characters in names)
HOSTILE_IMAGE = "evil/<img src=x onerror=alert(1)>\x1b[31m\u202e:1"  # what an agent may report


def check(doc: Any, kind: str) -> None:
    jsonschema.validate(doc, {**SCHEMA, "oneOf": [{"$ref": f"#/$defs/{kind}"}]})


def fetch(address: str, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(f"http://{address}{path}", method=method, data=b"x" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


@pytest.fixture
def served(world_of: Callable[..., DaemonWorld]) -> Iterator[tuple[DaemonWorld, Daemon, StatusServer]]:
    w = world_of(2)
    w.write({"tb0": [server("alpha", env=SECRET_ENV), server("beta")], "tb1": [server("gamma")]})
    d = w.daemon(listen="127.0.0.1:0")
    d.site = status_pages
    srv = serve(d)
    try:
        yield w, d, srv
    finally:
        srv.stop()


def test_page_and_api_show_every_environment_and_server_from_the_same_data(
    served: tuple[DaemonWorld, Daemon, StatusServer],
) -> None:
    _, d, srv = served
    code, _, body = fetch(srv.address, "/")
    assert code == 200 and b"pending" in body  # before any cycle: declared, not yet observed
    d.cycle()
    code, headers, body = fetch(srv.address, "/")
    page = body.decode()
    assert code == 200 and headers["Content-Type"].startswith("text/html")
    assert "<script" not in page.lower()  # the page runs no script at all
    assert 'http-equiv="refresh"' in page
    for name in ("tb0", "tb1", "alpha", "beta", "gamma"):
        assert f'data-{"env" if name.startswith("tb") else "server"}="{name}"' in page
    code, _, body = fetch(srv.address, "/api/status")
    doc = json.loads(body)
    check(doc, "status")
    envs = {e["name"]: e for e in doc["environments"]}
    assert set(envs) == {"tb0", "tb1"}
    assert envs["tb0"]["verdict"] == "drift" and envs["tb0"]["declared"] == 2 and envs["tb0"]["running"] == 2
    alpha = next(s for s in envs["tb0"]["servers"] if s["name"] == "alpha")
    assert alpha["step"] == "create" and alpha["step_outcome"] == "ok" and alpha["source"].endswith("tb0.yaml:7")
    assert envs["tb0"]["timeline"] and envs["tb0"]["timeline"][-1]["ok"] == 2
    d.cycle()
    doc = json.loads(fetch(srv.address, "/api/status")[2])
    assert [e["verdict"] for e in doc["environments"]] == ["in-sync", "in-sync"]
    assert doc["totals"]["in-sync"] == 2 and doc["environments"][0]["last_success"] is not None
    runs = json.loads(fetch(srv.address, "/api/runs?limit=1")[2])
    check(runs, "runs")
    assert len(runs["runs"]) == 1 and {s["server"] for s in runs["runs"][0]["steps"]} == {"alpha", "beta", "gamma"}
    page = fetch(srv.address, "/")[2].decode()
    run_id = runs["runs"][0]["id"]
    assert f'id="run-{run_id}"' in page and f'href="#run-{run_id}"' in page  # a step links to its run


def test_an_unreachable_toolbox_turns_incomplete_and_the_rest_stays_in_sync(
    served: tuple[DaemonWorld, Daemon, StatusServer],
) -> None:
    w, d, srv = served
    d.cycle()
    w.sim.sim.set_faults(1, drop=True)
    d.cycle()
    doc = json.loads(fetch(srv.address, "/api/status")[2])
    check(doc, "status")
    envs = {e["name"]: e for e in doc["environments"]}
    assert envs["tb1"]["verdict"] == "incomplete" and "not-observed" in envs["tb1"]["reason"]
    assert envs["tb1"]["servers"][0]["live_state"] == "unobserved" and envs["tb1"]["unhealthy"] == 1
    assert envs["tb0"]["verdict"] == "in-sync"
    assert doc["environments"][0]["name"] == "tb1"  # worst first
    d.cycle()  # backing off now: skipped, its last observation kept, and said so
    envs = {e["name"]: e for e in json.loads(fetch(srv.address, "/api/status")[2])["environments"]}
    assert envs["tb1"]["verdict"] == "backing-off" and "unreachable" in envs["tb1"]["reason"]


def test_read_only_every_other_method_is_refused(served: tuple[DaemonWorld, Daemon, StatusServer]) -> None:
    _, d, srv = served
    d.cycle()
    for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS", "FROB"):
        code, headers, _ = fetch(srv.address, "/", method)
        assert code == 405 and headers["Allow"] == "GET, HEAD", method
    code, headers, body = fetch(srv.address, "/api/status", "HEAD")
    assert code == 200 and body == b"" and int(headers["Content-Length"]) > 100
    assert fetch(srv.address, "/nope")[0] == 404
    assert "script-src" not in fetch(srv.address, "/")[1]["Content-Security-Policy"]


def test_no_secret_value_appears_and_hostile_names_render_as_text(
    world_of: Callable[..., DaemonWorld],
) -> None:
    w = world_of(1)
    store = open_store(w.database_url)
    try:
        store.add_environment(HOSTILE, w.sim.addresses[0].rsplit(":", 1)[0] + "9")  # nobody listens there
    finally:
        store.close()
    w.write({"tb0": [server("alpha", env=SECRET_ENV)]})
    doc = {
        "apiVersion": "mcp-reconciler/v1",
        "kind": "Toolbox",
        "environment": HOSTILE,
        "servers": [server("beta")],
    }
    (w.manifests / "hostile.yaml").write_text(yaml.safe_dump(doc))
    d = w.daemon(listen="127.0.0.1:0")
    d.site = status_pages
    srv = serve(d)
    try:
        d.cycle()
        w.sim.sim.toolbox(0).containers["alpha"].image = HOSTILE_IMAGE  # the agent now reports this image
        d.cycle()
        page = fetch(srv.address, "/")[2].decode()
        api = fetch(srv.address, "/api/status")[2].decode()
        runs = fetch(srv.address, "/api/runs?limit=50")[2].decode()
    finally:
        srv.stop()
    for text in (page, api, runs):
        assert CANARY not in text and TOKEN not in text
    assert "<script>" not in page and "<img" not in page and "\x1b" not in page and "\u202e" not in page
    assert 'data-env="&lt;script&gt;alert(1)&lt;/script&gt;"' in page  # shown as text
    assert "evil/&lt;img src=x onerror=alert(1)&gt;\\x1b[31m\\u202e:1" in page  # escaped, controls made visible
    doc = json.loads(api)
    check(doc, "status")
    assert HOSTILE in {e["name"] for e in doc["environments"]}  # JSON keeps the value; escaping is the reader's
