"""`reconciler demo` as a newcomer runs it: a real subprocess, the real simulator on loopback, real SQLite."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from reconciler.app.demo import examples_dir
from reconciler.model.loader import load_manifests

CANARY = "CANARY-demo-7b3e9f1c2d"  # GITHUB_TOKEN: must reach the simulated container only
STAND_IN = re.compile(r"demo-[0-9a-f]{24}")  # the random value the demo makes up for CONTEXT7_API_KEY


def _env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RECONCILER_", "DTMA_", "BACKEND_TO"))
        and k not in ("GITHUB_TOKEN", "CONTEXT7_API_KEY")
    }
    # Settings the demo must ignore: if it read them it would fail (no such database) or leak them.
    env.update(
        {
            "GITHUB_TOKEN": CANARY,
            "RECONCILER_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
            "RECONCILER_JOURNAL": "/nonexistent/journal.db",
            "BACKEND_TO_DTMA_API_KEY": "wrong-token",
        }
    )
    return env


def _cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reconciler", *args], cwd=cwd, env=_env(),
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip


def _expected() -> set[tuple[str, str]]:
    desired = load_manifests([examples_dir()])
    return {(e.environment, s.name) for e in desired.environments for s in e.servers}


def _journal(cwd: Path, path: Path) -> tuple[list[dict[str, Any]], str]:
    done = _cli(cwd, "journal", "--journal", str(path), "--format", "json")
    assert done.returncode == 0, done.stderr
    runs: list[dict[str, Any]] = json.loads(done.stdout)
    return runs, done.stdout


def _assert_clean(*texts: str) -> None:
    for text in texts:
        assert CANARY not in text
        assert "wrong-token" not in text
        assert not STAND_IN.search(text)


def test_once_creates_every_example_server_and_journals_them_twice_over(tmp_path: Path) -> None:
    expected = _expected()
    assert len(expected) == 8 and {e for e, _ in expected} == {"research-toolbox", "coding-toolbox"}
    demo_dir = tmp_path / "demo"

    first = _cli(tmp_path, "demo", "--once", "--dir", str(demo_dir))
    assert first.returncode == 0, first.stdout + first.stderr
    created = set(re.findall(r"^  create (\S+)/(\S+) ok$", first.stdout, flags=re.MULTILINE))
    assert created == expected
    assert f"reconciler journal --journal {demo_dir / 'journal.db'}" in first.stdout

    second = _cli(tmp_path, "demo", "--once", "--dir", str(demo_dir))
    assert second.returncode == 0, second.stdout + second.stderr
    assert set(re.findall(r"^  create (\S+)/(\S+) ok$", second.stdout, flags=re.MULTILINE)) == expected

    runs, raw = _journal(tmp_path, demo_dir / "journal.db")
    assert [r["id"] for r in runs] == [2, 1]  # newest first: this run's creates are the top run
    for run in runs:
        assert run["kind"] == "apply" and run["outcome"] == "converged"
        steps = {(s["environment"], s["server"]) for s in run["steps"] if s["action"] == "create"}
        assert steps == expected
        assert all(s["outcome"] == "ok" for s in run["steps"])
    files = [p.read_bytes().decode("latin-1") for p in demo_dir.iterdir() if p.is_file()]
    _assert_clean(first.stdout, first.stderr, second.stdout, second.stderr, raw, *files)


def test_without_once_applies_manifest_edits_and_stops_on_sigint_with_exit_0(tmp_path: Path) -> None:
    # Exit 0, not 130: SIGINT is the normal way to stop the demo (README: `reconciler demo` exits 0 on stop); the
    # running cycle finishes and the demo says so. Only a second signal interrupts (KeyboardInterrupt, 130).
    demo_dir = tmp_path / "demo"
    proc = subprocess.Popen(
        [sys.executable, "-m", "reconciler", "demo", "--interval", "100ms", "--dir", str(demo_dir)],
        cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    stdout = proc.stdout
    reader = threading.Thread(target=lambda: [lines.put(line) for line in stdout], daemon=True)
    reader.start()
    seen: list[str] = []
    deadline = time.monotonic() + 30

    def wait_for(text: str, count: int = 1) -> None:
        while sum(text in line for line in seen) < count:
            left = deadline - time.monotonic()
            assert left > 0 and proc.poll() is None, f"no {text!r} line: {seen}"
            try:
                seen.append(lines.get(timeout=min(left, 1.0)))
            except queue.Empty:
                continue

    try:
        wait_for("Ctrl-C", 1)
        wait_for(" ok\n", 8)
        assert sum(line.startswith("  create ") for line in seen) == 8
        wait_for("in sync")
        wait_for("status page: http://127.0.0.1:")  # the demo serves its page on a free loopback port
        url = next(line for line in seen if line.startswith("status page: ")).split()[2]
        with urllib.request.urlopen(url, timeout=10) as resp:
            page = resp.read().decode()
        assert 'data-env="research-toolbox"' in page and 'data-env="coding-toolbox"' in page
        manifest = demo_dir / "manifests" / "research-toolbox.yaml"
        manifest.write_text(manifest.read_text().replace("Europe/Berlin", "Europe/Paris"))
        wait_for("replace research-toolbox/time ok")
        wait_for("in sync", 2)
        manifest.write_text(manifest.read_text().replace("servers:", "servers: 42\nold:"))
        wait_for("failed: ")  # an invalid edit is reported and the demo keeps going
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=10)
    while not lines.empty():
        seen.append(lines.get())
    err = proc.stderr.read() if proc.stderr else ""
    out = "".join(seen)
    assert code == 0, out + err
    assert "demo stopped: steps 9 ok" in out
    assert "research-toolbox.yaml" in next(line for line in seen if "failed: " in line)
    # Many cycles ran in sync; only the first after a change says so (after the creates, after the replace).
    assert sum("in sync" in line for line in seen) == 2
    assert "Traceback" not in err
    _assert_clean(out, err)
