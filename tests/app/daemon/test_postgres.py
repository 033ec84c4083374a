"""The daemon on PostgreSQL: a database outage (on a throwaway cluster) and three replicas on one database."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from reconciler.app.daemon import CycleReport
from tests.app.daemon.conftest import DaemonWorld, server

pytestmark = pytest.mark.postgres


def _pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return found[-1].parent if found else None


class Cluster:
    """A PostgreSQL cluster of our own on a free port: stopping it never touches the shared server."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="reconciler-pg-"))
        self.data = self.root / "data"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.as_postgres = os.geteuid() == 0
        if self.as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        argv = [str(self.bindir / tool), *args]
        if self.as_postgres:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, f"{tool} failed: {done.stderr}"

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", opts, "-l", str(self.root / "log"), "-w", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def destroy(self) -> None:
        subprocess.run(
            (["runuser", "-u", "postgres", "--"] if self.as_postgres else [])
            + [str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
            capture_output=True,
            timeout=30,
            check=False,
        )
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def cluster(pg_admin_url: str) -> Iterator[Cluster]:
    bindir = _pg_bin()
    if bindir is None:
        if os.environ.get("RECONCILER_REQUIRE_POSTGRES") == "1":
            pytest.fail("initdb/pg_ctl not found under /usr/lib/postgresql/*/bin")
        pytest.skip("initdb/pg_ctl not found under /usr/lib/postgresql/*/bin")
    c = Cluster(bindir)
    try:
        c.start()
        yield c
    finally:
        c.destroy()


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_database_outage_readiness_turns_false_and_work_resumes(
    cluster: Cluster, world_of: Callable[..., DaemonWorld], caplog: pytest.LogCaptureFixture
) -> None:
    w = world_of(2, url=cluster.url)
    w.write({"tb0": [server("sa")], "tb1": [server("sb")]})
    d = w.daemon(interval=3600, listen="127.0.0.1:0")
    codes: list[int] = []
    runner = threading.Thread(target=lambda: codes.append(d.run()))
    runner.start()
    try:
        assert d.cycle_finished.wait(20)
        readyz = f"http://{d.http_address}/readyz"
        assert _status(readyz) == 200
        assert w.creates() == 2

        cluster.stop()
        w.write({"tb0": [server("sa"), server("sc")], "tb1": [server("sb")]})
        down = d.cycle()
        assert not down.database_ok and down.results == ()
        assert _status(readyz) == 503
        assert _status(f"http://{d.http_address}/healthz") == 200
        assert runner.is_alive()
        assert w.creates() == 2  # nothing acted on while the database is away

        cluster.start()
        with caplog.at_level(logging.INFO, logger="reconciler"):
            back = d.cycle()
        assert back.database_ok
        assert [r.levelno for r in caplog.records if r.getMessage() == "database reachable again"] == [
            logging.INFO
        ]
        assert [(r.step.server, r.outcome) for r in back.results] == [("sc", "ok")]
        assert _status(readyz) == 200
    finally:
        d.stop()
        runner.join(30)
    assert codes == [0]


def test_three_replicas_split_thirty_toolboxes_and_create_each_server_once(
    pg_url: str, world_of: Callable[..., DaemonWorld]
) -> None:
    w = world_of(30, url=pg_url)
    w.write({name: [server("mcp")] for name in w.names})
    replicas = [w.daemon(journal=f"journal-{i}.db") for i in range(3)]
    start = threading.Barrier(3)
    reports: dict[int, list[CycleReport]] = {i: [] for i in range(3)}

    def replica(i: int) -> None:
        start.wait(10)
        for _ in range(2):
            reports[i].append(replicas[i].cycle())

    threads = [threading.Thread(target=replica, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(len(r) == 2 for r in reports.values())
    assert all(rep.database_ok for rs in reports.values() for rep in rs)
    assert w.creates() == 30  # every create exactly once, whichever replica made it
    for i in range(30):
        assert w.sim.counters(i).get("POST /tools", 0) == 1
        assert w.containers(i)["mcp"]["state"] == "running"
    created = [r.step.environment_name for rs in reports.values() for rep in rs for r in rep.results]
    assert sorted(created) == sorted(w.names)  # no toolbox had a step applied twice
    # The replicas share the toolboxes by leases (tests/app/daemon/test_replicas.py): between them, every
    # toolbox is covered once and nothing is left to do.
    finals = [r.cycle() for r in replicas]
    assert all(f.plan is not None and f.plan.steps == () for f in finals)
    assert sorted(n for f in finals for n in f.acted_on) == sorted(w.names)


def test_an_environment_locked_by_another_replica_is_skipped_not_read_as_empty(
    pg_url: str, world_of: Callable[..., DaemonWorld]
) -> None:
    from reconciler.app.stores import open_store

    w = world_of(2, url=pg_url)
    w.write({"tb0": [server("sa")], "tb1": [server("sb")]})
    other = open_store(pg_url)  # another replica, holding tb1
    try:
        tb1 = next(e.id for e in other.list_environments() if e.name == "tb1")
        assert other.try_lock_environment(tb1)
        d = w.daemon()
        report = d.cycle()
        assert report.locked_elsewhere == ("tb1",) and report.acted_on == ("tb0",)
        assert [r.step.environment_name for r in report.results] == ["tb0"]
        assert w.sim.counters(1) == {}  # not even listed
        other.unlock_environment(tb1)
        assert [r.step.environment_name for r in d.cycle().results] == ["tb1"]
    finally:
        other.close()


def test_a_replica_that_loses_its_lock_connection_starts_no_further_step(
    pg_url: str, pg_admin_url: str, world_of: Callable[..., DaemonWorld]
) -> None:
    import psycopg

    w = world_of(1, url=pg_url)
    w.write({"tb0": [server("s1"), server("s2"), server("s3")]})
    d = w.daemon(settings={"dtma_deploy_concurrency": 1})  # one create at a time, so two are still to start

    def cut_the_lock_connection(result: object) -> None:
        store = d._store
        assert store is not None and store._lock_conn is not None  # type: ignore[union-attr]
        pid = store._lock_conn.info.backend_pid  # type: ignore[union-attr]
        with psycopg.connect(pg_admin_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", [pid])

    calls: list[object] = []

    def on_step(result: object) -> None:
        calls.append(result)
        if len(calls) == 1:  # right after the first step: the connection holding the locks dies
            cut_the_lock_connection(result)

    d._on_step = on_step
    report = d.cycle()
    assert [r.outcome for r in report.results] == ["ok", "skipped", "skipped"]
    assert "lost" in report.results[1].message
    assert w.creates() == 1
    # The next cycle takes the lock again on a fresh connection and finishes the work.
    again = d.cycle()
    assert [(r.step.server, r.outcome) for r in again.results] == [("s2", "ok"), ("s3", "ok")]
