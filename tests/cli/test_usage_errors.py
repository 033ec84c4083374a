"""A usage error exits 1, never argparse's 2, which ``plan --detailed-exitcode`` callers read as "changes"."""

from __future__ import annotations

import subprocess
import sys

import pytest

from reconciler.cli import main


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["nosuch"],
        ["plan"],
        ["plan", "m/", "--detailed-exitcode", "--bogus"],
        ["plan", "m/", "--format", "yaml"],
        ["db"],
        ["db", "add-environment", "tb1"],
        ["journal", "--since"],
        ["--log-format", "xml", "validate", "m/"],
    ],
)
def test_usage_errors_exit_1_with_the_usage_on_stderr(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("usage: reconciler") and "error: " in err


def test_a_usage_error_exits_1_from_the_command_line_too() -> None:
    done = subprocess.run([sys.executable, "-m", "reconciler", "plan", "m/", "--detailed-exitcode", "--nope"],
                          capture_output=True, text=True, check=False, timeout=30)  # fmt: skip
    assert done.returncode == 1
    assert "unrecognized arguments: --nope" in done.stderr and done.stdout == ""


def test_help_and_version_still_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--help"], ["plan", "--help"], ["--version"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 0
    assert "mcp-reconciler" in capsys.readouterr().out
