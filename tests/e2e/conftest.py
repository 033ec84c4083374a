"""End-to-end fixtures: the real `reconciler` command as a subprocess, the simulator, SQLite or PostgreSQL."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

# These tests drive the whole program through these parts: imported here, so that a broken import fails the
# run instead of turning the end-to-end tests into skips.
import reconciler.app.stores
import reconciler.cli.db_cmd
import reconciler.core.planner
import reconciler.model.loader  # noqa: F401
from tests.sim_helpers import RunningSimulator, running_simulator


def require_every_part() -> None:
    """Nothing left to check: the parts are imported above, so a broken import fails the run (never a skip).
    Kept so that test modules written against the older helper still import."""


TOKEN = "e2e-dtma-token-5f4e3d2c1b"
CANARY = "CANARY-d41d8cd98f00b204"  # a secret value that must show up nowhere but the simulator's Env
_hosts = itertools.count(11)


@dataclass
class World:
    tmp: Path
    database_url: str
    sim: RunningSimulator
    names: list[str]
    manifests: Path
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        port = self.sim.addresses[0].rsplit(":", 1)[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RECONCILER_", "DTMA_", "BACKEND_TO"))}
        env.update({
            "RECONCILER_DATABASE_URL": self.database_url,
            "RECONCILER_JOURNAL": str(self.tmp / "journal.db"),
            "RECONCILER_SECRET_KEY": "e2e-hmac-key",
            "BACKEND_TO_DTMA_API_KEY": TOKEN,
            "DTMA_PORT": port,
            "CANARY_VAR": CANARY,
            "NO_COLOR": "1",
        })  # fmt: skip
        env.update(self.extra_env)
        return env

    def cli(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "reconciler", *args], env=self.env, cwd=self.tmp,
                              capture_output=True, text=True, timeout=timeout, check=False)  # fmt: skip

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "reconciler", *args], env=self.env, cwd=self.tmp,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip

    def write(self, servers_by_env: dict[str, list[dict[str, Any]]], *, prune: bool = False,
              allow_empty: bool = False) -> None:  # fmt: skip
        for old in self.manifests.glob("*.yaml"):
            old.unlink()
        for env_name, servers in servers_by_env.items():
            doc: dict[str, Any] = {
                "apiVersion": "mcp-reconciler/v1", "kind": "Toolbox", "environment": env_name,
                "policy": {"prune": prune, "allowEmpty": allow_empty}, "servers": servers,
            }  # fmt: skip
            (self.manifests / f"{env_name}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))

    def plan_json(self, *extra: str, code: int = 0) -> dict[str, Any]:
        done = self.cli("plan", str(self.manifests), "--format", "json", *extra)
        assert done.returncode == code, done.stderr
        data: dict[str, Any] = json.loads(done.stdout)
        return data

    def state(self, index: int) -> dict[str, Any]:
        data: dict[str, Any] = self.sim.admin(index, "GET", "/__sim/state")
        return data


def server(name: str, image: str | None = None, state: str = "running", **extra: Any) -> dict[str, Any]:
    # One image per server: the Agentopia schema allows one instance per catalog row (image) per toolbox.
    return {"name": name, "image": image or f"ghcr.io/acme/{name}:1.0.0", "transport": "sse",
            "endpoint": "/sse", "port": 8080, "state": state, **extra}  # fmt: skip


def _make_world(tmp: Path, url: str, toolboxes: int, **sim_kwargs: Any) -> Iterator[World]:
    host = f"127.0.{next(_hosts) % 250 + 2}.1"
    with running_simulator(toolboxes=toolboxes, token=TOKEN, per="address", host=host, **sim_kwargs) as sim:
        manifests = tmp / "manifests"
        manifests.mkdir()
        world = World(tmp, url, sim, [f"tb{i}" for i in range(toolboxes)], manifests)
        done = world.cli("db", "migrate", "--database", url)
        assert done.returncode == 0, done.stderr
        for i, name in enumerate(world.names):
            ip = sim.addresses[i].rsplit(":", 1)[0]
            done = world.cli("db", "add-environment", name, "--address", ip, "--database", url)
            assert done.returncode == 0, done.stderr
        yield world


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def world_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., World]]:
    contexts: list[Iterator[World]] = []

    def make(toolboxes: int = 2, **sim_kwargs: Any) -> World:
        url = (f"sqlite:///{tmp_path / 'state.db'}" if request.param == "sqlite"
               else request.getfixturevalue("pg_url"))  # fmt: skip
        gen = _make_world(tmp_path, url, toolboxes, **sim_kwargs)
        contexts.append(gen)
        return next(gen)

    yield make
    for gen in contexts:
        gen.close()


def steps_of(plan: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(environment, server, action) of each step, whatever the exact plan layout."""
    out = []
    for s in plan.get("steps", []):
        env = s.get("environment_name") or s.get("environment")
        out.append((str(env), str(s["server"]), str(s["action"])))
    return out


def kinds_of(plan: dict[str, Any]) -> list[tuple[str, str | None, str]]:
    return [(str(n.get("environment_name") or n.get("environment")), n.get("server"), str(n["kind"]))
            for n in plan.get("notices", [])]  # fmt: skip


def all_containers(world: World, index: int) -> dict[str, dict[str, Any]]:
    items: Sequence[dict[str, Any]] = world.state(index).get("containers", [])
    return {c["name"]: c for c in items}
