"""A daemon world: the simulator on loopback (one address per toolbox, one port), a real store with the
toolboxes registered, manifests on disk, and Daemon instances driven cycle by cycle with a test clock."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.app.daemon import Daemon, DaemonConfig
from reconciler.app.stores import open_store
from reconciler.model.secrets import Secret
from reconciler.runtime.execute import ExecutorConfig
from reconciler.settings import Settings
from tests.sim_helpers import RunningSimulator, running_simulator

TOKEN = "daemon-dtma-token-8e7f6a"
CANARY = "CANARY-daemon-0f1e2d3c"
FAST = ExecutorConfig(poll_interval=0.01, ready_timeout=5.0, retries=2, backoff_base=0.01)
_hosts = itertools.count(60)


class ShiftClock:
    """Real time plus an offset the test moves forward (backoff, readiness), so polling still works."""

    def __init__(self) -> None:
        self.offset = 0.0
        self.base = datetime(2026, 1, 1, tzinfo=UTC)
        self._start = time.monotonic()

    def monotonic(self) -> float:
        return time.monotonic() + self.offset

    def now(self) -> datetime:
        return self.base + timedelta(seconds=time.monotonic() - self._start + self.offset)

    def advance(self, seconds: float) -> None:
        self.offset += seconds


def server(name: str, image: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": image or f"ghcr.io/acme/{name}:1.0.0", "transport": "sse",
            "endpoint": "/sse", "port": 8080, **extra}  # fmt: skip


@dataclass
class DaemonWorld:
    tmp: Path
    sim: RunningSimulator
    database_url: str
    names: list[str]
    manifests: Path
    clock: ShiftClock = field(default_factory=ShiftClock)
    daemons: list[Daemon] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.sim.addresses[0].rsplit(":", 1)[1])

    def settings(self, journal: str = "journal.db", **overrides: Any) -> Settings:
        return Settings(database_url=self.database_url, journal_path=str(self.tmp / journal), dtma_port=self.port,
                        dtma_token=Secret(TOKEN), secret_key=Secret("daemon-test-key"),
                        dtma_connect_timeout=1.0, dtma_read_timeout=2.0, **overrides)  # fmt: skip

    def write(self, servers_by_env: dict[str, list[dict[str, Any]]], *, prune: bool = False) -> None:
        for old in self.manifests.glob("*.yaml"):
            old.unlink()
        for env_name, servers in servers_by_env.items():
            doc = {"apiVersion": "mcp-reconciler/v1", "kind": "Toolbox", "environment": env_name,
                   "policy": {"prune": prune}, "servers": servers}  # fmt: skip
            (self.manifests / f"{env_name}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))

    def daemon(self, journal: str = "journal.db", settings: dict[str, Any] | None = None, **config: Any) -> Daemon:
        cfg = DaemonConfig(paths=(str(self.manifests),), **config)
        d = Daemon(self.settings(journal, **(settings or {})), cfg, environ={"CANARY_VAR": CANARY},
                   clock=self.clock, executor_config=FAST)  # fmt: skip
        self.daemons.append(d)
        return d

    def containers(self, index: int) -> dict[str, dict[str, Any]]:
        return {c["name"]: c for c in self.sim.admin(index, "GET", "/__sim/state").get("containers", [])}

    def creates(self, index: int | None = None) -> int:
        return self.sim.counters(index).get("POST /tools", 0)


def make_world(tmp: Path, url: str, toolboxes: int, **sim_kwargs: Any) -> Iterator[DaemonWorld]:
    """``sim_kwargs`` go to the simulator, e.g. ``mode="older"`` for the older agent lineage."""
    host = f"127.0.{next(_hosts) % 250 + 2}.1"
    with running_simulator(toolboxes=toolboxes, token=TOKEN, per="address", host=host, **sim_kwargs) as sim:
        store = open_store(url, create=True)
        names = [f"tb{i}" for i in range(toolboxes)]
        try:
            for i, name in enumerate(names):
                store.add_environment(name, sim.addresses[i].rsplit(":", 1)[0])
        finally:
            store.close()
        manifests = tmp / "manifests"
        manifests.mkdir(exist_ok=True)
        world = DaemonWorld(tmp, sim, url, names, manifests)
        try:
            yield world
        finally:
            for d in world.daemons:
                d.close()


@pytest.fixture
def world_of(tmp_path: Path) -> Iterator[Callable[..., DaemonWorld]]:
    gens: list[Iterator[DaemonWorld]] = []

    def make(toolboxes: int = 3, url: str | None = None) -> DaemonWorld:
        gen = make_world(tmp_path, url or f"sqlite:///{tmp_path / 'state.db'}", toolboxes)
        gens.append(gen)
        return next(gen)

    yield make
    for gen in gens:
        gen.close()
