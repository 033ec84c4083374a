"""The daemon loop: scheduler, HTTP endpoints, stop requests, and the real `reconciler run` with signals."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from reconciler.adapters.journal import Journal
from reconciler.runtime.execute import StepResult
from tests.app.daemon.conftest import CANARY, TOKEN, DaemonWorld, server


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def journal_runs(path: Path) -> list[tuple[str, str | None]]:
    j = Journal(path)
    try:
        return [(r.kind, r.outcome) for r in reversed(j.runs(limit=100))]
    finally:
        j.close()


def test_scheduled_daemon_serves_health_metrics_and_stops_cleanly(world_of: Callable[..., DaemonWorld]) -> None:
    w = world_of(2)
    w.write({"tb0": [server("sa")], "tb1": [server("sb")]})
    d = w.daemon(interval=3600, listen="127.0.0.1:0")
    codes: list[int] = []
    runner = threading.Thread(target=lambda: codes.append(d.run()))
    runner.start()
    try:
        assert d.cycle_finished.wait(20), "the scheduler never ran the first cycle"
        assert d.http_address is not None
        base = f"http://{d.http_address}"
        assert get(base + "/healthz") == (200, "ok\n")
        assert get(base + "/readyz") == (200, "ready\ntb0: complete\ntb1: complete\n")
        status, body = get(base + "/metrics")
        assert status == 200
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for f in text_string_to_metric_families(body) for s in f.samples}  # fmt: skip
        assert samples[("reconciler_steps_total", (("action", "create"), ("outcome", "ok")))] == 2
        assert samples[("reconciler_manifest_valid", ())] == 1
        assert samples[("reconciler_database_up", ())] == 1
        assert samples[("reconciler_drift_steps", ())] == 2
        assert samples[("reconciler_last_success_timestamp_seconds", ())] > 0
        assert samples[("reconciler_cycle_duration_seconds_count", ())] == 1
        assert get(base + "/nope")[0] == 404
        assert CANARY not in body and TOKEN not in body
    finally:
        d.stop()
        runner.join(20)
    assert codes == [0]
    assert journal_runs(w.tmp / "journal.db") == [
        ("daemon-start", "started"), ("apply", "converged"), ("daemon-stop", "stopped")
    ]  # fmt: skip


def test_stop_lets_the_running_step_finish_and_starts_no_other(world_of: Callable[..., DaemonWorld]) -> None:
    w = world_of(1)
    w.write({"tb0": [server("s1"), server("s2"), server("s3")]})
    d = w.daemon(settings={"dtma_deploy_concurrency": 1})  # one create at a time, so two are still to start

    def on_step(result: StepResult) -> None:
        d.stop()  # as SIGTERM would, while the first step has just finished

    d._on_step = on_step
    report = d.cycle()
    assert [r.outcome for r in report.results] == ["ok", "skipped", "skipped"]
    assert "stopping" in report.results[1].message
    assert w.creates() == 1
    steps = Journal(w.tmp / "journal.db")
    try:
        assert [(s.server, s.outcome) for s in steps.steps()] == [("s1", "ok")]  # vetoed steps never started
        assert steps.runs(limit=1)[0].outcome == "stopped"
    finally:
        steps.close()


def _env(w: DaemonWorld, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECONCILER_", "DTMA_", "BACKEND_TO"))}
    env.update({"RECONCILER_DATABASE_URL": w.database_url, "RECONCILER_JOURNAL": str(w.tmp / "journal.db"),
                "RECONCILER_SECRET_KEY": "k", "BACKEND_TO_DTMA_API_KEY": TOKEN, "DTMA_PORT": str(w.port),
                "RECONCILER_DTMA_READ_TIMEOUT": "10"})  # fmt: skip
    env.update(extra or {})
    return env


def _start(w: DaemonWorld, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "reconciler", "run", str(w.manifests), *args], env=_env(w),
                            cwd=w.tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def _wait(condition: Callable[[], bool], proc: subprocess.Popen[str], what: str, limit: float = 20) -> None:
    """Poll a real external process with a deadline (allowed: it is not our own scheduler)."""
    deadline = time.monotonic() + limit
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"daemon exited ({proc.returncode}) before {what}: {proc.stderr.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_reconciler_run_converges_and_exits_zero_on_sigterm(world_of: Callable[..., DaemonWorld]) -> None:
    import socket

    w = world_of(2)
    w.write({"tb0": [server("sa")], "tb1": [server("sb")]})
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = _start(w, "--interval", "1h", "--listen", f"127.0.0.1:{port}")

    def ready() -> bool:
        try:
            return get(f"http://127.0.0.1:{port}/readyz")[0] == 200
        except OSError:
            return False

    _wait(ready, proc, "/readyz")
    assert w.creates() == 2
    second = subprocess.run([sys.executable, "-m", "reconciler", "run", str(w.manifests), "--once"], env=_env(w),
                            cwd=w.tmp, capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
    assert second.returncode == 1
    assert "another reconciler daemon is running" in second.stderr
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert ("daemon-stop", "stopped") in journal_runs(w.tmp / "journal.db")
    assert "daemon stopped" in err


def test_a_second_signal_exits_at_once_and_journals_the_interruption(world_of: Callable[..., DaemonWorld]) -> None:
    w = world_of(1)
    w.write({"tb0": [server("slow1"), server("slow2")]})
    w.sim.sim.set_faults(0, latency=0.4)
    proc = _start(w, "--interval", "1h", "--stop-timeout", "60s")
    journal = w.tmp / "journal.db"

    def stepping() -> bool:
        if not journal.exists():
            return False
        try:
            with sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=1) as conn:
                return bool(conn.execute("SELECT 1 FROM steps WHERE outcome IS NULL").fetchall())
        except sqlite3.OperationalError:  # the daemon is still creating the tables
            return False

    _wait(stepping, proc, "a step in progress")
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")), daemon=True)
    reader.start()
    proc.send_signal(signal.SIGTERM)
    # Two signals sent back to back may reach the handler as one: wait until the first was handled.
    _wait(lambda: any("received SIGTERM" in ln for ln in lines), proc, "the first signal to be handled")
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    reader.join(5)
    assert proc.returncode == 128 + signal.SIGTERM
    runs = journal_runs(journal)
    assert ("daemon-stop", "interrupted") in runs
    assert ("apply", "interrupted") in runs
    j = Journal(journal)
    try:
        assert "interrupted" in {s.outcome for s in j.steps()}
    finally:
        j.close()
