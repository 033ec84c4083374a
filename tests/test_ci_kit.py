"""The CI kit: the composite Action and the workflows are valid YAML and every `reconciler` command they run
exists with those flags (parsed by the real parser); the pre-commit hook catches a broken manifest in a
temporary repository; `reconciler schema` prints the shipped schemas."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.cli import build_parser
from reconciler.resources import schema_path

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / "examples" / "ci").rglob("*.yml"))


def run_blocks(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["run"]] if isinstance(node.get("run"), str) else []
        return found + [b for v in node.values() for b in run_blocks(v)]
    if isinstance(node, list):
        return [b for v in node for b in run_blocks(v)]
    return []


def reconciler_commands(script: str) -> list[list[str]]:
    """Each `reconciler ...` invocation in a shell script, as words, without redirections or what follows."""
    out = []
    for line in script.splitlines():
        for m in re.finditer(r"(?:^|;|then|&&)\s*(reconciler\s[^;>|&]*)", line):
            words = shlex.split(m.group(1).replace('"${scope[@]}"', ""))
            out.append(words[1:])
    return out


def test_the_ci_kit_is_there() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in WORKFLOWS}
    assert {"examples/ci/action/action.yml", "examples/ci/github-actions-plan.yml",
            "examples/ci/github-actions-apply.yml"} <= names  # fmt: skip


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_is_valid_yaml_and_runs_real_commands(path: Path) -> None:
    doc = yaml.safe_load(path.read_text())
    assert isinstance(doc, dict)
    if path.name == "action.yml":
        assert doc["runs"]["using"] == "composite"
        assert all("shell" in s for s in doc["runs"]["steps"] if "run" in s)  # composite steps need a shell
    else:
        assert "jobs" in doc and (True in doc or "on" in doc)  # YAML 1.1 reads `on:` as True
    commands = [c for block in run_blocks(doc) for c in reconciler_commands(block)]
    assert commands or "examples/ci/action" in path.read_text(), f"{path.name} runs no reconciler command"
    parser = build_parser()
    for words in commands:
        try:
            parser.parse_args(words)
        except SystemExit as exc:  # pragma: no cover - the message names the command
            raise AssertionError(f"{path.name}: `reconciler {' '.join(words)}` does not parse") from exc


def test_the_plan_workflow_uses_the_action_in_this_repository() -> None:
    doc = yaml.safe_load((ROOT / "examples/ci/github-actions-plan.yml").read_text())
    uses = [s.get("uses", "") for s in doc["jobs"]["plan"]["steps"]]
    assert any(u.split("@")[0].endswith("/examples/ci/action") for u in uses)
    action = yaml.safe_load((ROOT / "examples/ci/action/action.yml").read_text())
    assert "mcp-reconciler-plan:" in json.dumps(action)  # the sticky comment's hidden marker


def test_schema_prints_the_shipped_schemas() -> None:
    for which, name in (("manifest", "manifest.v1.schema.json"), ("plan", "plan.v1.schema.json")):
        done = subprocess.run([sys.executable, "-m", "reconciler", "schema", which],
                              capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
        assert done.returncode == 0 and json.loads(done.stdout) == json.loads(schema_path(name).read_text())


def test_the_pre_commit_hook_sees_every_manifest_at_once() -> None:
    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    hook = next(h for h in hooks if h["id"] == "reconciler-validate")
    assert hook["pass_filenames"] is False and hook["entry"].split()[:2] == ["reconciler", "validate"]
    build_parser().parse_args([*hook["entry"].split()[1:], *hook["args"]])


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_pre_commit_hook_catches_a_broken_manifest(tmp_path: Path) -> None:
    if not (ROOT / ".git").exists():
        pytest.fail("the pre-commit hook test needs the repository's git checkout")
    repo = tmp_path / "repo"
    (repo / "manifests").mkdir(parents=True)
    shutil.copy(ROOT / "examples" / "research-toolbox.yaml", repo / "manifests" / "good.yaml")
    who = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com"}
    env = {**os.environ, **who, "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
           "PRE_COMMIT_HOME": str(tmp_path / "cache")}  # fmt: skip

    def hook() -> subprocess.CompletedProcess[str]:
        subprocess.run(["git", "add", "-A"], cwd=repo, check=True, env=env)
        return subprocess.run(
            [sys.executable, "-m", "pre_commit", "try-repo", str(ROOT), "reconciler-validate", "--all-files"],
            cwd=repo, env=env, capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip

    subprocess.run(["git", "init", "-q", "."], cwd=repo, check=True, env=env)
    passed = hook()
    assert passed.returncode == 0, passed.stdout + passed.stderr
    (repo / "manifests" / "broken.yaml").write_text(
        "apiVersion: mcp-reconciler/v1\nkind: Toolbox\nenvironment: other\nservers:\n  - name: srv\n    image: 3\n"
    )
    failed = hook()
    assert failed.returncode == 1
    assert "manifests/broken.yaml:6:12: servers[0].image" in failed.stdout
