"""JSON logs of the real `reconciler run` chosen by RECONCILER_LOG_FORMAT (as a service sets it): every line
is a JSON object, and steps and cycles carry fields a log pipeline can filter on."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from tests.app.daemon.conftest import CANARY, TOKEN, DaemonWorld, server
from tests.app.daemon.test_run import _env


def test_run_once_logs_json_lines_with_step_and_cycle_fields(world_of: Callable[..., DaemonWorld]) -> None:
    w = world_of(2)
    w.write({"tb0": [server("sa", env={"K": {"secretFromEnv": "CANARY_VAR"}})], "tb1": [server("sb")]})
    w.sim.sim.set_image("ghcr.io/acme/sb:1.0.0", missing=True)  # tb1's deploy fails: no such image
    proc = subprocess.run(
        [sys.executable, "-m", "reconciler", "run", str(w.manifests), "--once"],
        env=_env(w, {"RECONCILER_LOG_FORMAT": "json", "CANARY_VAR": CANARY, "RECONCILER_DTMA_CALL_DEADLINE": "5"}),
        cwd=w.tmp, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr  # tb1's step failed
    assert CANARY not in proc.stderr and TOKEN not in proc.stderr
    lines: list[dict[str, Any]] = [json.loads(line) for line in proc.stderr.splitlines()]
    assert lines and all({"time", "level", "logger", "message"} <= set(line) for line in lines)

    steps = [line for line in lines if line.get("action") == "create"]
    by_env = {line["environment"]: line for line in steps}
    assert set(by_env) == {"tb0", "tb1"}
    ok, failed = by_env["tb0"], by_env["tb1"]
    assert (ok["server"], ok["outcome"], ok["level"]) == ("sa", "ok", "info")
    assert (failed["server"], failed["outcome"], failed["level"]) == ("sb", "failed", "warning")
    assert isinstance(ok["run_id"], int) and ok["run_id"] == failed["run_id"]
    assert isinstance(ok["duration_ms"], int) and ok["duration_ms"] >= 0

    cycle = [line for line in lines if line["message"].startswith("cycle:")]
    assert len(cycle) == 1 and cycle[0]["outcome"] == "partial" and cycle[0]["run_id"] == ok["run_id"]
    assert isinstance(cycle[0]["duration_ms"], int)
    backoff = [line for line in lines if line.get("outcome") == "backing-off"]
    assert [line["environment"] for line in backoff] == ["tb1"]
