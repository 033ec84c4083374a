"""A 5,000-step plan: markdown split into valid comment bodies under GitHub's limit, annotations capped with a
notice, the job summary written; and the markdown never shows Python's None."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from reconciler.core.plan import Action, Change, Notice, NoticeKind, Plan, Step
from reconciler.model.spec import SourceRef
from reconciler.presentation.github import render_github
from reconciler.presentation.markdown import GITHUB_COMMENT_LIMIT, render_markdown, render_markdown_parts
from reconciler.presentation.plan_json import plan_to_dict

ACTIONS = (Action.CREATE, Action.REPLACE, Action.STOP, Action.DELETE)


def big_plan(steps: int = 5000) -> Plan:
    out = []
    for i in range(steps):
        env = f"toolbox-{i % 3}"
        change = Change("image", None if i % 2 else f"ghcr.io/acme/s{i}:1", f"ghcr.io/acme/s{i}:2")
        out.append(
            Step(
                f"id-{env}",
                env,
                f"server-{i:05d}",
                ACTIONS[i % 4],
                f"reason {i} " + "x" * 40,
                (change,),
                SourceRef("manifests/big.yaml", i + 1),
            )
        )
    notices = tuple(
        Notice("id-toolbox-0", "toolbox-0", f"orphan-{i}", NoticeKind.ORPHAN, "kept") for i in range(30)
    )
    return Plan(steps=tuple(out), notices=notices)


def check_valid_markdown(part: str) -> None:
    assert part.count("<details>") == part.count("</details>") >= 1
    # every table row has the column count of its header
    header_cols = None
    for line in part.splitlines():
        if not line.startswith("|"):
            header_cols = None
            continue
        cols = len(re.findall(r"(?<!\\)\|", line))
        if header_cols is None:
            header_cols = cols
        assert cols == header_cols, line


def test_a_5000_step_plan_is_split_into_valid_parts_under_the_limit() -> None:
    plan = big_plan()
    whole = render_markdown(plan)
    assert len(whole) > GITHUB_COMMENT_LIMIT and "None" not in whole and "(none) →" in whole
    parts = render_markdown_parts(plan)
    assert len(parts) > 1
    for i, part in enumerate(parts, 1):
        assert len(part) <= GITHUB_COMMENT_LIMIT - 200
        assert part.startswith(f"### mcp-reconciler plan (part {i} of {len(parts)})")
        check_valid_markdown(part)
    rows = [line for part in parts for line in part.splitlines() if "| server-" in line]
    assert len(rows) == 5000 and len(set(rows)) == 5000  # every step once, none lost at a cut
    assert "| **total** | 1250 | 1250 | 0 | 0 | 1250 | 1250 | 0 | 30 |" in parts[0]  # one summary table, first


def test_a_small_plan_is_one_part_with_one_details_block_per_environment() -> None:
    plan = big_plan(6)
    parts = render_markdown_parts(plan)
    assert parts == [render_markdown(plan)]
    assert parts[0].count("<details><summary>toolbox-") == 3


def test_annotations_are_capped_per_level_with_a_final_notice() -> None:
    out = render_github(big_plan()).splitlines()
    for level in ("error", "warning", "notice"):
        assert sum(1 for line in out if line.startswith(f"::{level}")) <= 10
    assert out[-2].startswith("::notice title=More in the log::and ")
    assert "3740 warning(s)" in out[-2] and "1271 notice(s)" in out[-2]
    assert sum(1 for line in out if "server-" in line) == 5000  # the rest stay in the log as plain lines


def test_show_writes_the_split_parts_and_the_job_summary(tmp_path: Path) -> None:
    data = plan_to_dict(big_plan())
    (tmp_path / "plan.json").write_text(json.dumps(data))
    summary = tmp_path / "summary.md"
    env = {**os.environ, "GITHUB_STEP_SUMMARY": str(summary)}
    done = subprocess.run(
        [sys.executable, "-m", "reconciler", "show", "plan.json", "--format", "github", "--split", "parts"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    parts = sorted((tmp_path / "parts").glob("part-*.md"))
    assert len(parts) > 1 and parts[0].name == "part-001.md"
    assert summary.read_text().startswith("### mcp-reconciler plan")
