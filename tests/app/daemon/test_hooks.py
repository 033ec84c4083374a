"""Reconcile now: the signed git webhook on the daemon's listener, coalescing, SIGHUP and `reconcile-now`."""

from __future__ import annotations

import http.client
import itertools
import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest

from reconciler.app.daemon import Daemon, DaemonConfig
from reconciler.core.webhook import sign
from reconciler.model.secrets import Secret
from tests.app.daemon.conftest import FAST, DaemonWorld, server
from tests.app.daemon.test_run import _env, _start, _wait, get

HOOK_SECRET = "hook-secret-5d4c3b2a"
WITHIN = 1.0  # seconds: the bound from a signed push to a cycle
_deliveries = itertools.count(1)


class Cycles:
    """Counts the daemon's cycles; ``gate`` (when set) holds the cycle it is given inside the daemon's loop."""

    def __init__(self) -> None:
        self.count = 0
        self.changed = threading.Condition()
        self.hold: threading.Event | None = None
        self.held = threading.Event()

    def __call__(self, report: Any) -> None:
        with self.changed:
            hold, self.hold = self.hold, None  # taken before the count moves: a waiter may set the next one
            self.count += 1
            self.changed.notify_all()
        if hold is not None:
            self.held.set()
            hold.wait(20)

    def wait_for(self, count: int, timeout: float) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: self.count >= count, timeout)


@pytest.fixture
def running(world_of: Callable[..., DaemonWorld]) -> Iterator[Callable[..., tuple[Daemon, Cycles]]]:
    started: list[tuple[Daemon, threading.Thread]] = []

    def start(secret: str | None = HOOK_SECRET, **config: Any) -> tuple[Daemon, Cycles]:
        w = world_of(1)
        w.write({"tb0": [server("sa")]})
        cycles = Cycles()
        settings = replace(w.settings(), webhook_secret=Secret(secret) if secret else None)
        cfg = DaemonConfig(paths=(str(w.manifests),), interval=3600, listen="127.0.0.1:0", **config)
        d = Daemon(settings, cfg, clock=w.clock, executor_config=FAST, on_cycle=cycles,
                   pid_path=w.tmp / "daemon.pid")  # fmt: skip
        w.daemons.append(d)
        runner = threading.Thread(target=d.run)
        runner.start()
        started.append((d, runner))
        assert cycles.wait_for(1, 20), "the scheduler never ran the first cycle"
        return d, cycles

    yield start
    for d, runner in started:
        d.stop()
        runner.join(20)


def post(d: Daemon, body: bytes | None = None, *, secret: str | None = HOOK_SECRET, delivery: str | None = None,
         headers: dict[str, str] | None = None, event: str = "push") -> tuple[int, str]:  # fmt: skip
    body = body if body is not None else json.dumps({"ref": "refs/heads/main", "n": next(_deliveries)}).encode()
    sent = {"Content-Type": "application/json", "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery or f"d-{next(_deliveries)}"}  # fmt: skip
    if secret is not None:
        sent["X-Hub-Signature-256"] = sign(secret.encode(), body)
    sent.update(headers or {})
    assert d.http_address is not None
    host, port = d.http_address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("POST", "/hooks/git", body=body, headers=sent)
        answer = conn.getresponse()
        return answer.status, answer.read().decode()
    finally:
        conn.close()


def declared_too_large(d: Daemon) -> int:
    assert d.http_address is not None
    host, port = d.http_address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.putrequest("POST", "/hooks/git")
        for name, value in (("X-Hub-Signature-256", "sha256=" + "0" * 64), ("X-GitHub-Delivery", "big"),
                            ("Content-Length", str(1024 * 1024 + 1))):  # fmt: skip
            conn.putheader(name, value)
        conn.endheaders()
        return conn.getresponse().status
    finally:
        conn.close()


def test_a_signed_push_triggers_a_cycle_within_one_second(running: Callable[..., tuple[Daemon, Cycles]]) -> None:
    d, cycles = running()
    status, text = post(d)
    assert (status, text) == (202, "a cycle starts within 0.25s\n")
    assert cycles.wait_for(2, WITHIN), "no cycle within a second of a signed push"
    assert d.last_report is not None and d.last_report.database_ok


def test_unsigned_wrong_and_malformed_requests_are_refused_and_change_nothing(
    running: Callable[..., tuple[Daemon, Cycles]],
) -> None:
    d, cycles = running()
    body = b'{"ref": "refs/heads/main"}'
    assert post(d, body, secret=None)[0] == 401
    assert post(d, body, secret="not-the-secret")[0] == 403
    assert post(d, body, headers={"X-Hub-Signature-256": "sha256=" + "0" * 64})[0] == 403
    assert post(d, body, headers={"X-Hub-Signature-256": "garbage"})[0] == 403
    assert declared_too_large(d) == 413  # answered on its headers: the body is never read
    assert post(d, body, headers={"X-GitHub-Delivery": ""})[0] == 400
    assert post(d, event="ping") == (200, "pong\n")
    # GET is not the webhook: the route takes POST only (405, not 404: the path exists)
    assert get(f"http://{d.http_address}/hooks/git") == (405, "method not allowed: this route takes POST\n")
    host, port = (d.http_address or "").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("HEAD", "/hooks/git")
        head = conn.getresponse()
        assert (head.status, head.getheader("Allow"), head.read()) == (405, "POST", b"")  # HEAD: headers only
    finally:
        conn.close()
    # A replayed delivery (same id, or the same signed body under a new id) is acknowledged without a cycle.
    assert post(d, body, delivery="dup-1")[0] == 202
    assert cycles.wait_for(2, 20)
    assert post(d, body, delivery="dup-1") == (200, "duplicate delivery: no cycle\n")
    assert post(d, body, delivery="dup-2") == (200, "duplicate delivery: no cycle\n")
    # Nothing above but the first dup-1 made a cycle: the next valid push makes exactly the third.
    assert post(d)[0] == 202
    assert cycles.wait_for(3, 20)
    assert cycles.count == 3


def test_without_a_secret_the_route_refuses_every_request(running: Callable[..., tuple[Daemon, Cycles]]) -> None:
    d, cycles = running(secret=None)
    status, text = post(d, secret="anything")
    assert status == 403 and "RECONCILER_WEBHOOK_SECRET" in text
    assert post(d, secret=None)[0] == 403
    assert cycles.count == 1


def test_a_burst_of_ten_pushes_during_a_cycle_makes_one_more_cycle(
    running: Callable[..., tuple[Daemon, Cycles]],
) -> None:
    d, cycles = running()
    release = threading.Event()
    cycles.hold = release
    assert post(d)[0] == 202  # cycle 2 starts, and is held inside the daemon's loop
    assert cycles.held.wait(20)
    answers = [post(d) for _ in range(10)]
    assert answers[0] == (202, "one more cycle after the running one\n")
    assert answers[1:] == [(202, "a cycle is already asked for\n")] * 9
    release.set()
    assert cycles.wait_for(3, 20)  # the ten made one cycle...
    assert post(d)[0] == 202  # ...and only one: the next push makes the fourth
    assert cycles.wait_for(4, 20)
    assert cycles.count == 4


def test_a_burst_of_ten_pushes_with_no_cycle_running_makes_one_cycle(
    running: Callable[..., tuple[Daemon, Cycles]],
) -> None:
    # A settle window wider than the default so that ten requests surely fit in it on a loaded machine.
    d, cycles = running(trigger_settle=2.0)
    answers = [post(d) for _ in range(10)]
    assert answers[0] == (202, "a cycle starts within 2s\n")
    assert answers[1:] == [(202, "a cycle is already asked for\n")] * 9
    assert cycles.wait_for(2, 20)  # the ten made one cycle...
    assert post(d)[0] == 202  # ...and only one: the next push makes the third
    assert cycles.wait_for(3, 20)
    assert cycles.count == 3


def test_reconcile_now_signals_the_running_daemon(world_of: Callable[..., DaemonWorld]) -> None:
    import socket

    w = world_of(1)
    w.write({"tb0": [server("sa")]})
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = _start(w, "--interval", "1h", "--listen", f"127.0.0.1:{port}")

    def cycles() -> float:
        try:
            status, text = get(f"http://127.0.0.1:{port}/metrics")
        except OSError:
            return 0
        found = [line.split()[-1] for line in text.splitlines() if line.startswith("reconciler_cycles_total")]
        return sum(float(v) for v in found) if status == 200 else 0

    try:
        _wait(lambda: cycles() >= 1, proc, "the first cycle")
        now = [sys.executable, "-m", "reconciler", "reconcile-now"]
        poked = subprocess.run(
            now, env=_env(w), cwd=w.tmp, capture_output=True, text=True, timeout=30, check=False
        )
        assert poked.returncode == 0, poked.stderr
        assert f"(pid {proc.pid})" in poked.stderr
        _wait(lambda: cycles() >= 2, proc, "the cycle SIGHUP asked for")
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    after = subprocess.run(now, env=_env(w), cwd=w.tmp, capture_output=True, text=True, timeout=30, check=False)
    assert after.returncode == 1
    assert "no daemon is running" in after.stderr
