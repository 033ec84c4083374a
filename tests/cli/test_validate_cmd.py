"""``reconciler validate`` as users run it: through the running interpreter, from another directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def reconciler(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "reconciler"]
    environ = {k: v for k, v in os.environ.items() if k not in ("GITHUB_TOKEN", "CONTEXT7_API_KEY")}
    environ.update(env or {})
    return subprocess.run(
        [*argv, *args], cwd=cwd, env=environ, capture_output=True, text=True, timeout=60, check=False
    )


def test_examples_are_valid_from_any_directory(tmp_path: Path) -> None:
    result = reconciler("validate", str(EXAMPLES), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == "OK: 2 environments, 8 servers in 2 files\n"
    assert result.stderr == ""


def test_examples_name_the_two_toolboxes_and_use_private_host_ports() -> None:
    from reconciler.model.loader import load_manifests

    desired = load_manifests([EXAMPLES])
    assert sorted(e.environment for e in desired.environments) == ["coding-toolbox", "research-toolbox"]
    ports = [s.host_port for e in desired.environments for s in e.servers if s.host_port is not None]
    assert ports and all(31000 <= p <= 31999 for p in ports)
    assert any(s.secret_refs for e in desired.environments for s in e.servers)


def test_require_secrets_fails_until_the_variables_are_set(tmp_path: Path) -> None:
    missing = reconciler("validate", str(EXAMPLES), "--require-secrets", cwd=tmp_path)
    assert missing.returncode == 1
    assert [line.split(": ", 2)[1] for line in missing.stdout.splitlines()] == [
        "servers[0].env.GITHUB_PERSONAL_ACCESS_TOKEN.secretFromEnv",
        "servers[0].env.CONTEXT7_API_KEY.secretFromEnv",
    ]
    canary = "CANARY-secret-value-1234"
    present = reconciler(
        "validate", str(EXAMPLES), "--require-secrets", cwd=tmp_path,
        env={"GITHUB_TOKEN": canary, "CONTEXT7_API_KEY": canary},
    )  # fmt: skip
    assert present.returncode == 0, present.stdout
    assert canary not in present.stdout + present.stderr


BROKEN = """\
apiVersion: mcp-reconciler/v1
kind: Toolbox
environment: tb
servers:
  - name: my server
    image: Mcp/Fetch
    transport: http
"""


def test_invalid_manifests_exit_1_and_print_only_the_issues(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(BROKEN)
    result = reconciler("validate", "bad.yaml", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr == ""
    assert result.stdout.splitlines() == [
        "bad.yaml:5:11: servers[0].name: 'my server' is not a valid container name: letters, digits, '_', '.' "
        "and '-', starting with a letter or digit, at least 2 characters",
        "bad.yaml:6:12: servers[0].image: 'Mcp/Fetch': repository path 'Mcp/Fetch' must be lowercase",
        "bad.yaml:7:16: servers[0].transport: must be one of stdio, sse, streamable-http, websocket (got 'http')",
    ]


def test_github_format_prints_error_annotations(tmp_path: Path) -> None:
    (tmp_path / "dir,with:odd").mkdir()
    (tmp_path / "dir,with:odd" / "bad.yaml").write_text(BROKEN)
    result = reconciler("validate", "--format", "github", "dir,with:odd", cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    assert lines[2] == (
        "::error file=dir%2Cwith%3Aodd/bad.yaml,line=7,col=16::servers[0].transport: "
        "must be one of stdio, sse, streamable-http, websocket (got 'http')"
    )


@pytest.mark.parametrize("args", [["validate"], ["validate", "x", "--format", "xml"]])
def test_usage_errors_exit_1(tmp_path: Path, args: list[str]) -> None:
    # Not argparse's 2, which a --detailed-exitcode caller would read as "changes".
    result = reconciler(*args, cwd=tmp_path)
    assert result.returncode == 1
    assert "usage: reconciler validate" in result.stderr


def test_help_documents_the_command(tmp_path: Path) -> None:
    result = reconciler("validate", "--help", cwd=tmp_path)
    assert result.returncode == 0
    for word in ("--require-secrets", "--format", "file:line:column: path: message", "stdout"):
        assert word in result.stdout
