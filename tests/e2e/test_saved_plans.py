"""Saved plans mean what was reviewed: their scope, a basis over that scope only, and the desired state they
carry (no manifest read at apply time); `show`, `--server` and `--no-refresh`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import jsonschema

from reconciler.resources import schema_path
from tests.e2e.conftest import CANARY, World, all_containers, server, steps_of

SECRET_ENV = {"API_KEY": {"secretFromEnv": "CANARY_VAR"}}


def cli_in(w: World, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reconciler", *args], env=w.env, cwd=cwd,
                          capture_output=True, text=True, timeout=30, check=False)  # fmt: skip


def calls(w: World, index: int) -> dict[str, int]:
    return {k: v for k, v in w.sim.counters(index).items() if not k.startswith("GET")}


def test_a_saved_plan_applies_its_scope_from_another_checkout(world_factory: Callable[..., World]) -> None:
    w = world_factory(2)
    checkout = w.tmp / "checkout-a"
    w.write({"tb0": [server("srv-a", env=SECRET_ENV)], "tb1": [server("srv-c")]})
    assert w.cli("apply", str(w.manifests)).returncode == 0
    # a change on both toolboxes; the reviewed plan covers tb0 only
    w.write({"tb0": [server("srv-a", env=SECRET_ENV), server("srv-b")], "tb1": [server("srv-c"), server("srv-d")]})
    shutil.copytree(w.manifests, checkout / "manifests")
    done = cli_in(w, checkout, "plan", "manifests", "--env", "tb0", "--out", "plan.json")
    assert done.returncode == 0, done.stderr
    saved = json.loads((checkout / "plan.json").read_text())
    assert steps_of(saved) == [("tb0", "srv-b", "create")]
    assert saved["scope"]["environments"] == ["tb0"] and len(saved["basis"]["database"]) == 1
    assert [e["environment"] for e in saved["desired"]] == ["tb0"]
    assert CANARY not in (checkout / "plan.json").read_text() and "paths" not in saved["basis"]
    jsonschema.validate(saved, json.loads(schema_path("plan.v1.schema.json").read_text()))
    # the checkout goes away; the plan moves to another directory; a toolbox outside the scope changes
    elsewhere = w.tmp / "checkout-b"
    elsewhere.mkdir()
    shutil.move(str(checkout / "plan.json"), elsewhere / "plan.json")
    shutil.rmtree(checkout)
    w.sim.admin(1, "POST", "/__sim/exit-after", {"name": "srv-c", "seconds": 0})
    before_tb1 = calls(w, 1)
    done = cli_in(w, elsewhere, "apply", "plan.json")
    assert done.returncode == 0, done.stderr
    assert set(all_containers(w, 0)) >= {"srv-a", "srv-b"} and "srv-d" not in all_containers(w, 1)
    assert calls(w, 1) == before_tb1  # nothing done outside the reviewed scope
    assert all_containers(w, 1)["srv-c"]["state"] != "running"


def test_a_change_inside_the_scope_makes_the_saved_plan_stale(world_factory: Callable[..., World]) -> None:
    w = world_factory(2)
    w.write({"tb0": [server("srv-a")], "tb1": [server("srv-c")]})
    assert w.cli("apply", str(w.manifests)).returncode == 0
    w.write({"tb0": [server("srv-a"), server("srv-b")], "tb1": [server("srv-c")]})
    assert w.cli("plan", str(w.manifests), "--env", "tb0", "--out", "plan.json").returncode == 0
    w.sim.admin(0, "POST", "/__sim/exit-after", {"name": "srv-a", "seconds": 0})
    before = calls(w, 0)
    done = w.cli("apply", "plan.json")
    assert done.returncode == 1 and "stale" in done.stderr and "tb0" not in done.stderr.split("stale")[0]
    assert calls(w, 0) == before


def test_a_plan_file_beside_manifest_paths_is_a_usage_error(world_factory: Callable[..., World]) -> None:
    w = world_factory(1)
    w.write({"tb0": [server("srv-a")]})
    assert w.cli("plan", str(w.manifests), "--out", "plan.json").returncode == 0
    done = w.cli("apply", "plan.json", str(w.manifests))
    assert done.returncode == 1 and "not both" in done.stderr and "schema" not in done.stderr
    assert done.stderr.count("\n") <= 2
    scoped = w.cli("apply", "plan.json", "--env", "tb0")
    assert scoped.returncode == 1 and "scope" in scoped.stderr
    # a plan saved by an older reconciler (manifest paths, no desired state) is refused, saying why
    old = json.loads((w.tmp / "plan.json").read_text())
    del old["desired"]
    old["basis"]["paths"] = [str(w.manifests)]
    (w.tmp / "old.json").write_text(json.dumps(old))
    refused = w.cli("apply", "old.json")
    assert refused.returncode == 1 and "older reconciler" in refused.stderr and "make a new plan" in refused.stderr


def test_show_prints_what_plan_printed_in_every_format(world_factory: Callable[..., World]) -> None:
    w = world_factory(2)
    w.write({"tb0": [server("srv-a"), server("srv-b")], "tb1": [server("srv-c")]})
    w.sim.sim.set_faults(1, drop=True)  # tb1 unreachable: the incomplete verdict names its address
    for fmt in ("text", "json", "markdown", "github"):
        for extra in ((), ("--server", "srv-b")):
            made = w.cli(
                "plan", str(w.manifests), "--format", fmt, "--allow-incomplete", "--out", "p.json", *extra
            )
            assert made.returncode == 0, made.stderr
            shown = w.cli("show", "p.json", "--format", fmt)
            assert shown.returncode == 0, shown.stderr
            assert shown.stdout == made.stdout, (fmt, extra)
    assert "Partial plan: only server(s) srv-b" in w.cli("show", "p.json").stdout
    assert "127." in w.cli("show", "p.json").stdout  # the unreachable toolbox's address was kept


def test_server_limits_the_plan_and_an_unknown_name_lists_the_valid_ones(
    world_factory: Callable[..., World],
) -> None:
    w = world_factory(1)
    w.write({"tb0": [server("srv-a"), server("srv-b")]})
    partial = w.plan_json("--server", "srv-b")
    assert steps_of(partial) == [("tb0", "srv-b", "create")]
    assert partial["scope"]["partial"] is True
    done = w.cli("plan", str(w.manifests), "--server", "srv-x")
    assert done.returncode == 1 and "srv-x" in done.stderr and "srv-a, srv-b" in done.stderr
    assert w.cli("apply", str(w.manifests), "--server", "srv-a").returncode == 0
    assert set(all_containers(w, 0)) >= {"srv-a"} and "srv-b" not in all_containers(w, 0)


def test_no_refresh_reads_no_toolbox_and_cannot_be_saved(world_factory: Callable[..., World]) -> None:
    w = world_factory(1)
    w.write({"tb0": [server("srv-a")]})
    assert w.cli("apply", str(w.manifests)).returncode == 0
    w.write({"tb0": [server("srv-a"), server("srv-b")]})
    w.sim.admin(0, "POST", "/__sim/exit-after", {"name": "srv-a", "seconds": 0})  # only a listing shows it
    before = dict(w.sim.counters(0))
    done = w.cli("plan", str(w.manifests), "--no-refresh")
    assert done.returncode == 0, done.stderr
    assert dict(w.sim.counters(0)) == before  # no DTMA call at all
    assert "Live state not read" in done.stdout
    assert "+ create srv-b" in done.stdout and "~ restart" not in done.stdout
    saved = w.cli("plan", str(w.manifests), "--no-refresh", "--out", "p.json")
    assert saved.returncode == 1 and "cannot be applied" in saved.stderr
    assert not (w.tmp / "p.json").exists()
