"""When no plan can be made (invalid manifests, any other error), every format still says why."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.errors import ManifestError, ManifestIssue, StoreError
from reconciler.presentation.failure import render_failure

ISSUES = [
    ManifestIssue("manifests/tb1.yaml", 7, 9, "servers[0].imgae", "unknown key 'imgae' (did you mean 'image'?)"),
    ManifestIssue("manifests/tb1.yaml", 2, 1, "$", "missing required key 'kind'"),
]


def test_github_annotates_each_issue_on_its_line() -> None:
    lines = render_failure(ManifestError(ISSUES), "github").splitlines()
    assert lines[0] == "::error file=manifests/tb1.yaml,line=2,col=1::$: missing required key 'kind'"
    assert lines[1].startswith("::error file=manifests/tb1.yaml,line=7,col=9::servers[0].imgae: unknown key")
    assert lines[2:] == ["The manifests are invalid (2 issues); no plan was made."]


def test_markdown_is_an_error_block_with_a_row_per_issue() -> None:
    out = render_failure(ManifestError(ISSUES), "markdown")
    assert out.startswith("### mcp-reconciler plan\n\n> :x: **The manifests are invalid (2 issues); no plan")
    assert "| manifests/tb1.yaml | 7 | 9 | servers[0].imgae | unknown key 'imgae' (did you mean 'image'?) |" in out
    assert "No changes" not in out


def test_json_is_an_error_object() -> None:
    data = json.loads(render_failure(ManifestError(ISSUES), "json"))
    assert data["format_version"] == 1 and "steps" not in data
    assert data["error"]["kind"] == "invalid-manifests"
    assert data["error"]["issues"][1] == {
        "file": "manifests/tb1.yaml",
        "line": 7,
        "column": 9,
        "path": "servers[0].imgae",
        "message": "unknown key 'imgae' (did you mean 'image'?)",
    }


@pytest.mark.parametrize("fmt", ["github", "markdown", "json"])
def test_any_other_error_is_one_message(fmt: str) -> None:
    out = render_failure(StoreError("cannot open sqlite:///nope/state.db: no such directory"), fmt)
    assert "cannot open sqlite:///nope/state.db: no such directory" in out
    if fmt == "github":
        assert out == "::error::cannot open sqlite:///nope/state.db: no such directory\n"
    if fmt == "json":
        assert json.loads(out)["error"] == {
            "kind": "error",
            "message": "cannot open sqlite:///nope/state.db: no such directory",
            "issues": [],
        }


def plan_cli(manifests: Path, fmt: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    state, journal = f"sqlite:///{tmp_path / 'state.db'}", str(tmp_path / "journal.db")
    argv = [sys.executable, "-m", "reconciler", "plan", str(manifests), "--format", fmt, "--detailed-exitcode",
            "--database", state, "--journal", journal]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("fmt", ["github", "markdown", "json", "text"])
def test_plan_on_invalid_manifests_prints_the_errors_in_its_format_and_exits_1(tmp_path: Path, fmt: str) -> None:
    manifest = tmp_path / "m" / "tb1.yaml"
    manifest.parent.mkdir()
    manifest.write_text(
        "apiVersion: mcp-reconciler/v1\nkind: Toolbox\nenvironment: tb1\nservers:\n"
        "  - name: s1\n    imgae: ghcr.io/acme/s1:1\n"
    )
    done = plan_cli(manifest.parent, fmt, tmp_path)
    assert done.returncode == 1
    assert "imgae" in done.stderr  # the one-line error for the log, whatever the format
    if fmt == "github":
        assert f"::error file={manifest},line=6,col=5::servers[0].imgae: unknown key" in done.stdout
    elif fmt == "markdown":
        assert "> :x: **The manifests are invalid" in done.stdout and "| 6 | 5 |" in done.stdout
    elif fmt == "json":
        issues = json.loads(done.stdout)["error"]["issues"]
        assert (6, 5, "servers[0].imgae") in [(i["line"], i["column"], i["path"]) for i in issues]
    else:
        assert done.stdout == ""
