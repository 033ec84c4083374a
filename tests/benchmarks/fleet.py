"""A fleet for the benchmarks: DTMA simulators (own process or in-process), a SQLite store, manifests.

Seeding builds a converged fleet directly (store rows through the Store API, containers through the
simulator's admin ``/__sim/seed``), so a 10,000-server steady state takes seconds to set up instead of a
10,000-create apply.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from reconciler.model.secrets import Secret
from reconciler.ports import DtmaTarget, NewInstance
from reconciler.settings import Settings
from reconciler.simulator import ADMIN_HEADER, Simulator

TOKEN = "bench-dtma-token-7c1e5a"
ADMIN_TOKEN = "bench-sim-admin-token"
SIM_START_TIMEOUT = 60.0
PG_ADMIN_URL = os.environ.get("RECONCILER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
SHAPE = "c"  # the newer agent: the reconciler lists its authenticated /tools/status with one call


class SimFleet:
    """``toolboxes`` simulated agents, one per loopback address from ``host`` on one port.

    In ``subprocess`` mode the toolboxes are split over ``processes`` simulator processes (consecutive
    address ranges, one port): each simulator is one Python process with one GIL, while real toolboxes are
    separate machines, so one process for a thousand agents would make the simulator the limit.
    """

    def __init__(
        self,
        toolboxes: int,
        *,
        latency: float,
        host: str,
        mode: str = "subprocess",
        processes: int = 1,
        pull_delay: float = 0.0,
    ) -> None:
        if mode not in ("subprocess", "inprocess"):
            raise ValueError(f"unknown simulator mode {mode!r}")
        self.toolboxes, self.latency, self.host, self.mode = toolboxes, latency, host, mode
        self.pull_delay = pull_delay
        self.processes = max(1, min(processes, toolboxes))
        self.addresses: list[str] = []
        self._procs: list[subprocess.Popen[bytes]] = []
        self._sim: Simulator | None = None

    def start(self, workdir: Path) -> SimFleet:
        if self.mode == "inprocess":
            self._sim = Simulator(
                toolboxes=self.toolboxes,
                host=self.host,
                port=0,
                per="address",
                token=TOKEN,
                admin_token=ADMIN_TOKEN,
                shape=SHAPE,
                faults={"latency": self.latency},
                pull_delay=self.pull_delay,
            ).start()
            self.addresses = self._sim.addresses
            return self
        base = ipaddress.ip_address(self.host)
        per, extra = divmod(self.toolboxes, self.processes)
        first = 0
        port = 0
        for k in range(self.processes):
            count = per + (1 if k < extra else 0)
            self.addresses += self._start_one(workdir, k, str(base + first), port, count)
            port = self.port
            first += count
        return self

    def _start_one(self, workdir: Path, k: int, host: str, port: int, count: int) -> list[str]:
        out = workdir / f"sim-addresses-{k}.json"
        env = {**os.environ, "BACKEND_TO_DTMA_API_KEY": TOKEN, "DTMA_SIM_ADMIN_TOKEN": ADMIN_TOKEN}
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "reconciler",
                "sim",
                "--listen",
                f"{host}:{port}",
                "--per",
                "address",
                "--toolboxes",
                str(count),
                "--latency",
                str(self.latency),
                "--shape",
                SHAPE,
                "--pull-delay",
                str(self.pull_delay),
                "--addresses-json",
                str(out),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._procs.append(proc)
        deadline = time.monotonic() + SIM_START_TIMEOUT
        while True:  # waiting on a real external process: poll a condition with a deadline
            if proc.poll() is not None:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise RuntimeError(f"simulator exited with {proc.returncode}: {err}")
            try:
                addresses: list[str] = json.loads(out.read_text())
                if len(addresses) == count:
                    return addresses
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("simulator did not start in time")
            time.sleep(0.02)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs]

    def stop(self) -> None:
        if self._sim is not None:
            self._sim.stop()
        for proc in self._procs:
            proc.terminate()
        for proc in self._procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stderr:
                proc.stderr.close()

    def __enter__(self) -> SimFleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return int(self.addresses[0].rsplit(":", 1)[1])

    def ip(self, index: int) -> str:
        return self.addresses[index].rsplit(":", 1)[0]

    def target(self, index: int) -> DtmaTarget:
        return DtmaTarget(f"env-{index}", f"http://{self.addresses[index]}", Secret(TOKEN))

    def admin(self, index: int, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"http://{self.addresses[index]}{path}",
            data=data,
            method=method,
            headers={ADMIN_HEADER: ADMIN_TOKEN, "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())

    def counters(self) -> list[dict[str, int]]:
        """Calls per route, per toolbox (admin calls are not counted by the simulator)."""
        with ThreadPoolExecutor(max_workers=16) as pool:
            return list(pool.map(lambda i: self.admin(i, "GET", "/__sim/counters"), range(self.toolboxes)))


def server_doc(index: int, *, probed: bool = False) -> dict[str, Any]:
    # One image per server name: the Agentopia schema allows one instance per image per toolbox.
    doc = {
        "name": f"s{index:03d}",
        "image": f"ghcr.io/acme/mcp-s{index:03d}:1.0.0",
        "transport": "sse",
        "endpoint": "/sse",
        "port": 8080,
        "capabilities": ["tools"],
    }
    if probed:  # published on a host port of its own: its readiness is the MCP handshake (streamable-http)
        doc.update({"transport": "streamable-http", "endpoint": "/mcp", "hostPort": PROBED_FIRST_PORT + index})
    return doc


PROBED_FIRST_PORT = 31001


@dataclass
class Fleet:
    workdir: Path
    sim: SimFleet
    settings: Settings
    manifests: Path
    names: list[str]
    environment_ids: dict[str, str] = field(default_factory=dict)  # name -> id

    @property
    def paths(self) -> list[str]:
        return [str(self.manifests)]


def build_fleet(
    workdir: Path,
    sim: SimFleet,
    servers: int,
    *,
    seed: bool,
    database_url: str | None = None,
    probed: bool = False,
) -> Fleet:
    """Database, environments and manifests for ``sim``; with ``seed``, every server already converged;
    ``probed``: every server publishes a host port and has an MCP readiness."""
    urls = [database_url] if database_url else None
    return build_fleets(workdir, sim, servers, seed=seed, database_urls=urls, probed=probed)[0]


def build_fleets(
    workdir: Path,
    sim: SimFleet,
    servers: int,
    *,
    seed: bool,
    database_urls: list[str] | None = None,
    probed: bool = False,
) -> list[Fleet]:
    """One fleet per database (default: a SQLite file) over the same simulators and manifests: every store
    holds the same toolboxes and, seeded, the same instance ids, so each observes the same converged fleet."""
    from reconciler.app.stores import migrate_database, open_store

    urls = database_urls or [f"sqlite:///{workdir / 'state.db'}"]
    manifests = workdir / "manifests"
    manifests.mkdir()
    names = [f"tb{i:04d}" for i in range(sim.toolboxes)]
    # Every toolbox declares the same servers: dump them once (PyYAML's emitter is slow at 10,000 files).
    body = yaml.safe_dump({"servers": [server_doc(j, probed=probed) for j in range(servers)]}, sort_keys=False)
    for name in names:
        head = yaml.safe_dump({"apiVersion": "mcp-reconciler/v1", "kind": "Toolbox", "environment": name})
        (manifests / f"{name}.yaml").write_text(head + body)
    fleets: list[Fleet] = []
    seeded: dict[tuple[str, str], str] = {}  # (environment name, server) -> instance id, shared by the stores
    for k, url in enumerate(urls):
        migrate_database(url)
        settings = Settings(
            database_url=url,
            journal_path=str(workdir / f"journal-{k}.db"),
            dtma_port=sim.port,
            dtma_token=Secret(TOKEN),
            secret_key=Secret("bench-hmac-key"),
        )
        fleet = Fleet(workdir, sim, settings, manifests, names)
        store = open_store(url)
        try:
            db = getattr(store, "_db", None)  # SQLite: one transaction, as in _seed
            with db.atomic() if db is not None else contextlib.nullcontext():
                for i, name in enumerate(names):
                    fleet.environment_ids[name] = store.add_environment(name, sim.ip(i)).id
            if seed:
                _seed(fleet, store, seeded, containers=k == 0)
        finally:
            store.close()
        fleets.append(fleet)
    return fleets


def _seed(
    fleet: Fleet, store: Any, ids: dict[tuple[str, str], str] | None = None, *, containers: bool = True
) -> None:
    """Converged rows in ``store`` (instance ids from ``ids``, new ones added to it) and, with ``containers``,
    the matching containers in the simulators."""
    ids = {} if ids is None else ids
    from reconciler.model.loader import load_manifests
    from reconciler.model.spec_hash import spec_hash
    from reconciler.model.stored import stored_config

    desired = load_manifests(fleet.paths)
    fingerprints: dict[str, str] = {}  # the benchmark manifests reference no secrets
    per_toolbox: list[list[dict[str, Any]]] = []
    # SQLite: one transaction for the whole seed (each write alone commits and syncs: 100,000 servers took
    # most of an hour on a busy machine).
    db = getattr(store, "_db", None)
    with db.atomic() if db is not None else contextlib.nullcontext():
        for env in desired.environments:
            env_id = fleet.environment_ids[env.environment]
            seeded: list[dict[str, Any]] = []
            for spec in env.servers:
                instance_id = ids.setdefault((env.environment, spec.name), str(uuid.uuid4()))
                config = stored_config(spec, spec_hash(spec, fingerprints), fingerprints)
                new = NewInstance(
                    env_id,
                    store.ensure_catalog(spec.image),
                    spec.name,
                    config,
                    spec.transport,
                    spec.endpoint,
                    spec.capabilities,
                    instance_id=instance_id,
                )
                store.create_instance(new)
                store.update_instance(instance_id, status="running")
                item: dict[str, Any] = {"name": spec.name, "image": spec.image, "instance_id": instance_id}
                if spec.host_port is not None:
                    item["ports"] = {f"{spec.port}/tcp": [{"HostPort": str(spec.host_port)}]}
                seeded.append(item)
            per_toolbox.append(seeded)
    if not containers:
        return
    order = {name: i for i, name in enumerate(fleet.names)}
    index_of = [order[env.environment] for env in desired.environments]
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(
            pool.map(
                lambda k: fleet.sim.admin(index_of[k], "POST", "/__sim/seed", {"containers": per_toolbox[k]}),
                range(len(per_toolbox)),
            )
        )


class PostgresDatabase:
    """A fresh database on the PostgreSQL server for one job, dropped at the end (as the store tests do)."""

    def __init__(self, admin_url: str = PG_ADMIN_URL) -> None:
        self.admin_url = admin_url
        self.name = f"rbench_{uuid.uuid4().hex[:12]}"
        base, _, _ = admin_url.rpartition("/")
        self.url = f"{base}/{self.name}"

    def __enter__(self) -> PostgresDatabase:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        return self

    def __exit__(self, *exc: object) -> None:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
