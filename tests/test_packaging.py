"""The built wheel carries its data: `reconciler validate` and `reconciler demo` work from any directory after
`pip install .`."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_installed_wheel_validates_from_any_directory(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(wheels), str(ROOT)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    [wheel] = wheels.glob("mcp_reconciler-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "reconciler/_data/schemas/manifest.v1.schema.json" in names
    assert "reconciler/_data/schemas/plan.v1.schema.json" in names
    assert "reconciler/_data/schemas/status-api.v1.schema.json" in names
    assert any(n.startswith("reconciler/_data/state/postgres/") for n in names)
    assert any(n.startswith("reconciler/_data/state/sqlite/") for n in names)
    for example in ("research-toolbox.yaml", "coding-toolbox.yaml", "systemd/mcp-reconciler.service"):
        assert f"reconciler/_data/examples/{example}" in names

    # Installed into its own directory, ahead of the source tree on the path, and run from elsewhere.
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(wheel)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target)}
    where = subprocess.run(
        [sys.executable, "-c", "import reconciler; print(reconciler.__file__)"],
        cwd=elsewhere, env=env, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    assert where.stdout.startswith(str(target))
    done = subprocess.run(
        [sys.executable, "-m", "reconciler", "validate", str(ROOT / "examples")],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("OK")

    # `reconciler demo` finds the examples inside the wheel: no checkout anywhere near.
    demo = subprocess.run(
        [sys.executable, "-m", "reconciler", "demo", "--once", "--dir", str(tmp_path / "demo")],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert f"(a fresh copy of {target / 'reconciler' / '_data' / 'examples'})" in demo.stdout
    assert "demo finished: steps 8 ok" in demo.stdout
