"""``apply --log-format json``: every line on stderr is a JSON object (progress, failed steps, the summary),
so a service's log pipeline can parse all of it."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.conftest import _make_world, server


def test_every_stderr_line_of_a_json_apply_parses(tmp_path: Path) -> None:
    gen = _make_world(tmp_path, f"sqlite:///{tmp_path / 'state.db'}", 1)
    w = next(gen)
    try:
        w.write({"tb0": [server("good"), server("bad")]})
        w.sim.admin(0, "POST", "/__sim/images", {"image": "ghcr.io/acme/bad:1.0.0", "missing": True})
        done = w.cli("--log-format", "json", "apply", str(w.manifests))
        assert done.returncode == 4, done.stdout + done.stderr  # one step done, one failed
        lines = [json.loads(line) for line in done.stderr.splitlines() if line.strip()]
        failed = [x for x in lines if x.get("event") == "step"]
        assert [(x["server"], x["outcome"]) for x in failed] == [("bad", "failed")]
        [summary] = [x for x in lines if x.get("event") == "summary"]
        assert summary["outcome"] == "partial" and isinstance(summary["run_id"], int)
        assert summary["message"] == "apply: 1 of 2 steps done; run partial"
    finally:
        gen.close()
